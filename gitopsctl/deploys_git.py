"""Where gitopsctl reads the branch it deploys: the remote-tracking ref, never a local branch."""

from __future__ import annotations


def remote_ref(config) -> str:
    return f"refs/remotes/{config.git.remote}/{config.git.branch}"
