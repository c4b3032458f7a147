"""Bringing the local clone in line with the remote before stage or rollback acts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from gitopsctl import repo as gitrepo
from gitopsctl.errors import UsageError


def remote_ref(config) -> str:
    return f"refs/remotes/{config.git.remote}/{config.git.branch}"


def unpushed_commits(root: Path, config) -> list[str]:
    repo = gitrepo.open_repo(root)
    out = repo.git.execute(["git", "rev-list", f"{remote_ref(config)}..HEAD"],
                           env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    return [line for line in out.split() if line]


def align_with_remote(root: Path, config, progress: Callable[[str], None]) -> str:
    """Fetch; push our own leftover commits (a run killed between commit and push);
    fast-forward to the remote tip. Returns the remote tip.

    A developer's unrelated local commits are never pushed or discarded: that is an error.
    """
    gitrepo.fetch(root, config.git.remote, config.git.branch)
    ahead = unpushed_commits(root, config)
    if ahead:
        ours = {r.commit for r in gitrepo.deploy_log(root, "HEAD", limit=len(ahead) + 20)}
        foreign = [c for c in ahead if c not in ours]
        if foreign:
            raise UsageError(
                f"the local branch has {len(foreign)} commit(s) not on "
                f"{config.git.remote}/{config.git.branch} (e.g. {foreign[0][:7]})",
                hint="push or drop them first; gitopsctl only pushes its own deploy and rollback commits")
        progress(f"pushing {len(ahead)} deploy/rollback commit(s) left by an interrupted run")
        gitrepo.push_with_retry(root, config.git.remote, config.git.branch,
                                retries=config.git.push_retries, progress=progress)
        gitrepo.fetch(root, config.git.remote, config.git.branch)
    if gitrepo.is_ancestor(root, "HEAD", remote_ref(config)):
        gitrepo.fast_forward(root, config.git.remote, config.git.branch)
    return gitrepo.resolve_commit(root, remote_ref(config))
