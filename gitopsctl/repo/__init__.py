"""Git as the record, and the only package that runs git.

Small named functions (pre-commit's git.py style) over one runner (`runner.run`): an
argument list, never a shell, and a deadline on every call, after which git and the
helpers it started are killed as a process group. Nothing here force-pushes or
rewrites published history.

  runner   the one way to start git, its deadlines and environment
  revs     revisions, the one source resolver, ancestry, working-tree state, remote URL
  trees    files read out of commits (ls-tree, cat-file, grep, archive)
  records  deploy/rollback commit messages and trailers, the deploy log
  commits  commits in the work tree (bump) and off it in a private index (stage, rollback)
  remote   fetch, fast-forward, pushes that never force

`from gitopsctl import repo as gitrepo` and `from gitopsctl.repo import NAME` keep working
for every name below.
"""

from __future__ import annotations

from pathlib import Path

from gitopsctl.repo.commits import (MissingHistory, RevertConflict, commit_files, commit_paths,
                                    reset_last_commit, revert_onto)
from gitopsctl.repo.records import (EVIDENCE, IMAGE, REASON, REVERTS, ROLLBACK_OF, SOURCE, STAGE,
                                    SUSPENSION, Author, DeployRecord, LogPage, commit_message,
                                    deploy_log, format_message, log_page, parse_trailers)
from gitopsctl.repo.remote import (PushRejected, PushResult, fast_forward, fetch, follow_remote,
                                   push_built, push_commit, push_with_retry)
from gitopsctl.repo.revs import (changed_paths, commit_time, current_branch, find_commit, head,
                                 is_ancestor, is_full_sha, is_shallow, remote_ref, remote_url,
                                 resolve_commit, resolve_source, tracked_changes, tracking_ref,
                                 validate_sha)
from gitopsctl.repo.runner import LOCAL_TIMEOUT, NETWORK_TIMEOUT
from gitopsctl.repo.trees import (ARCHIVE_LIMIT, SUBMODULE_MODE, SYMLINK_MODE, TreeFile, archive,
                                  grep_files, has_path, object_type, read_blobs, tree_files,
                                  worktree_files)


def open_repo(path: Path | str):
    """A GitPython Repo, for readers that want its object model (the tests do).

    gitopsctl itself never runs a command through it: GitPython's timeout kills git but
    not git's remote helper, and every git call here goes through `runner.run`."""
    import git

    from gitopsctl.errors import InputError

    try:
        return git.Repo(str(path), search_parent_directories=False)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise InputError(f"{path} is not a git repository",
                         hint="run gitopsctl inside the homelab repository, or pass --repo") from None


__all__ = [
    "ARCHIVE_LIMIT", "EVIDENCE", "IMAGE", "LOCAL_TIMEOUT", "NETWORK_TIMEOUT", "REASON", "REVERTS",
    "ROLLBACK_OF", "SOURCE", "STAGE", "SUBMODULE_MODE", "SUSPENSION", "SYMLINK_MODE",
    "Author", "DeployRecord", "LogPage", "MissingHistory", "PushRejected", "PushResult", "RevertConflict",
    "TreeFile",
    "archive", "changed_paths", "commit_files", "commit_message", "commit_paths", "commit_time",
    "current_branch", "deploy_log", "fast_forward", "fetch", "find_commit", "follow_remote",
    "format_message", "grep_files", "has_path", "head", "is_ancestor", "is_full_sha",
    "is_shallow", "log_page", "object_type", "open_repo", "parse_trailers", "push_built", "push_commit",
    "push_with_retry", "read_blobs", "remote_ref", "remote_url", "reset_last_commit",
    "resolve_commit", "resolve_source", "revert_onto", "tracked_changes", "tracking_ref",
    "tree_files", "validate_sha", "worktree_files",
]
