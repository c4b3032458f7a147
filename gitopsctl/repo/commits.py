"""Making commits: in the work tree for bump, off the work tree for stage and rollback.

stage and rollback never touch the user's working tree or index: they read files from
the remote tip's tree, build the new commit in a private index (GIT_INDEX_FILE) and push
the commit object itself. A dirty checkout, staged work or a kill between "write" and
"commit" therefore cannot leak into, or be mistaken for, a deploy.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from typing import Callable, Mapping, Sequence

from gitopsctl.errors import ExternalError, InputError
from gitopsctl.repo.records import Author
from gitopsctl.repo.revs import changed_paths, head, is_ancestor, is_shallow, resolve_commit
from gitopsctl.repo.runner import run, text
from gitopsctl.repo.trees import SUBMODULE_MODE, SYMLINK_MODE


class MissingHistory(InputError):
    """The clone lacks commits an answer depends on (a shallow CI checkout)."""

    kind = "missing-history"

    def __init__(self, what: str):
        super().__init__(f"{what}: this clone is shallow and the history that answers it "
                         "is not here",
                         hint="gitopsctl reads deploys and rollbacks from git log: fetch the full "
                              "history (`git fetch --unshallow`, or `fetch-depth: 0` in the "
                              "checkout step) and run again")


class RevertConflict(ExternalError):
    exit_code = 3
    kind = "revert-conflict"


def commit_paths(root: Path | str, paths: Sequence[str], message: str,
                 author: Author) -> str | None:
    """Commit exactly `paths` (repo-relative) with `message`; None when nothing changed.

    Other staged or modified files are left alone. Hooks are not run: these commits
    are made by automation and their content was validated before writing.
    """
    if not changed_paths(root, paths):
        return None
    run(root, ["add", "--", *paths])
    run(root, ["commit", "--quiet", "--no-verify", "--cleanup=whitespace", "-m", message,
               "--only", "--", *paths], author=author)
    return head(root)


def reset_last_commit(root: Path | str) -> None:
    """Drop our own unpushed HEAD commit, keeping unrelated local changes (`reset --keep`)."""
    run(root, ["reset", "--quiet", "--keep", "HEAD~1"])


def _newest_first(root: Path | str, commits: Sequence[str]) -> list[str]:
    """Descendants before their ancestors (timestamps tie within a second; history does not)."""

    def compare(a: str, b: str) -> int:
        if a == b:
            return 0
        if is_ancestor(root, a, b):
            return 1
        if is_ancestor(root, b, a):
            return -1
        return 0

    return sorted(dict.fromkeys(commits), key=functools.cmp_to_key(compare))


def _with_private_index(root: Path | str, parent: str, work: Callable[[dict], None],
                        message: str, author: Author) -> str:
    """Load `parent`'s tree into a throwaway index, let `work(env)` change it, commit."""
    with tempfile.TemporaryDirectory(prefix="gitopsctl-index-") as tmp:
        env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
        run(root, ["read-tree", parent], env=env)
        work(env)
        from gitopsctl import failpoints

        failpoints.reached("index-written")
        tree = text(root, ["write-tree"], env=env)
        if tree == text(root, ["rev-parse", f"{parent}^{{tree}}"]):
            raise InputError("nothing to commit: the change is already in git")
        return text(root, ["commit-tree", tree, "-p", parent, "-F", "-"],
                    data=message.encode(), author=author)


def _stage_files(root: Path | str, files: Mapping[str, tuple[str, bytes]], env: dict) -> None:
    for path, (mode, content) in files.items():
        if mode in (SYMLINK_MODE, SUBMODULE_MODE):
            raise InputError(f"{path}: refusing to replace a link or submodule with file content")
        blob = text(root, ["hash-object", "-w", "--stdin"], data=content)
        run(root, ["update-index", "--add", "--cacheinfo", f"{mode},{blob},{path}"], env=env)


def commit_files(root: Path | str, parent: str, files: Mapping[str, tuple[str, bytes]],
                 message: str, author: Author) -> str:
    """A commit on `parent` whose tree differs only in `files` {path: (mode, content)}."""
    return _with_private_index(root, parent, lambda env: _stage_files(root, files, env),
                               message, author)


def revert_onto(root: Path | str, parent: str, commits: Sequence[str], message: str,
                author: Author, extra: Mapping[str, tuple[str, bytes]] | None = None) -> str:
    """One commit on `parent` undoing `commits` (newest first), plus the `extra` file edits."""
    ordered = _newest_first(root, [resolve_commit(root, c) for c in commits])

    def undo(env: dict) -> None:
        for commit in ordered:
            parents = run(root, ["rev-list", "--parents", "-n", "1", commit]).stdout.split()
            if len(parents) < 2:
                if is_shallow(root):
                    raise MissingHistory(f"the parent of deploy commit {commit[:7]} is missing")
                raise RevertConflict(f"{commit[:7]} has no parent to revert to")
            diff = run(root, ["diff", "--binary", "--full-index", "--no-renames",
                              f"{commit}^", commit]).stdout
            applied = run(root, ["apply", "--cached", "--3way", "-R"], data=diff, env=env,
                          ok_codes=(0, 1))
            if applied.returncode != 0:
                why = applied.stderr.decode("utf-8", "replace").strip().splitlines()
                raise RevertConflict(
                    f"cannot revert {commit[:7]}: a later commit changed the same lines "
                    f"({why[0] if why else 'conflict'})",
                    hint="nothing was pushed; look at `git log -p` of those files, revert by "
                         "hand (git revert), push, then run `gitopsctl verify`")
        if extra:
            _stage_files(root, extra, env)

    return _with_private_index(root, parent, undo, message, author)
