"""Reading commits and refs: resolve a revision, the one source resolver, ancestry, the
working tree's state, a remote's URL."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from gitopsctl.errors import InputError
from gitopsctl.repo.runner import run, text

_SHA_RE = re.compile(r"^[0-9a-fA-F]{4,64}$")
_FULL_SHA_RE = re.compile(r"^[0-9a-f]{40}$")


def is_full_sha(value) -> bool:
    """A whole lowercase SHA-1 commit id, as git prints it."""
    return isinstance(value, str) and _FULL_SHA_RE.match(value) is not None


def validate_sha(value: str, option: str | None = None) -> str:
    """4 to 64 hex digits, lowercased; `option` names the flag it came from in the error."""
    if not isinstance(value, str) or not _SHA_RE.match(value):
        what = f"{option} {value!r}" if option else repr(value)
        raise InputError(f"{what} is not a commit SHA",
                         hint="pass 4 to 40 hex digits, e.g. the output of `git rev-parse HEAD`")
    return value.lower()


def tracking_ref(remote: str, branch: str) -> str:
    """Where `fetch` leaves the remote branch: gitopsctl deploys from it, never a local branch."""
    return f"refs/remotes/{remote}/{branch}"


def remote_ref(config) -> str:
    """tracking_ref of the config's git.remote and git.branch."""
    return tracking_ref(config.git.remote, config.git.branch)


def find_commit(root: Path | str, rev: str) -> str | None:
    """The full SHA of `rev` if it names a commit here, else None."""
    if not isinstance(rev, str) or not rev or rev.startswith("-"):
        return None  # never let a revision be read as an option
    proc = run(root, ["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], ok_codes=(0, 1, 128))
    sha = proc.stdout.decode().strip()
    return sha if proc.returncode == 0 and sha else None


def resolve_commit(root: Path | str, rev: str) -> str:
    """The full SHA of `rev`, which must be a commit in this repository."""
    sha = find_commit(root, rev)
    if sha is None:
        raise InputError(f"commit {rev} is not in {root}",
                         hint="fetch first (`git fetch`), or check the SHA")
    return sha


def resolve_source(root: Path | str, source: str | None, *, option: str | None = None) -> str:
    """The app commit a command works on: `source` (a SHA, validated) or else HEAD.

    The one source resolver: build, bump, stage and rollback all turn --source into a
    full commit here, so they agree on what a short SHA or a missing --source means.
    """
    if source:
        return resolve_commit(root, validate_sha(source, option))
    sha = find_commit(root, "HEAD")
    if sha is None:
        raise InputError(f"{root} has no commits yet, and no {option or 'source'} was given",
                         hint="commit the app sources first, or pass --source SHA")
    return sha


def head(root: Path | str) -> str:
    return resolve_commit(root, "HEAD")


def is_ancestor(root: Path | str, ancestor: str, descendant: str) -> bool:
    """`git merge-base --is-ancestor`; a commit counts as its own ancestor, as in git."""
    proc = run(root, ["merge-base", "--is-ancestor", ancestor, descendant], ok_codes=(0, 1, 128))
    if proc.returncode == 128:
        why = proc.stderr.decode("utf-8", "replace").strip()
        raise InputError(f"cannot compare {ancestor} and {descendant}: {why}",
                         hint="are both commits in this repository? try `git fetch`")
    return proc.returncode == 0


def is_shallow(root: Path | str) -> bool:
    return text(root, ["rev-parse", "--is-shallow-repository"]) == "true"


def commit_time(root: Path | str, sha: str) -> int:
    """The committer timestamp of `sha` (seconds since the epoch)."""
    return int(text(root, ["show", "-s", "--format=%ct", resolve_commit(root, sha)]))


def remote_url(root: Path | str, remote: str) -> str | None:
    """The fetch URL of `remote` without any user:token@ part; None when there is none.

    Credentials are cut here because every caller publishes the URL (an image label)."""
    proc = run(root, ["remote", "get-url", "--", remote], ok_codes=(0, 1, 2, 128))
    url = proc.stdout.decode("utf-8", "replace").strip()
    if proc.returncode != 0 or not url:
        return None
    return re.sub(r"^([a-z][a-z0-9+.-]*://)[^/@]*@", r"\1", url, flags=re.IGNORECASE)


def changed_paths(root: Path | str, paths: Iterable[str]) -> list[str]:
    """Which of `paths` differ from HEAD (modified, added, deleted or untracked)."""
    out = run(root, ["status", "--porcelain=v1", "-z", "--untracked-files=all", "--", *paths]).stdout
    return [entry[3:] for entry in out.decode("utf-8", "surrogateescape").split("\0") if entry]


def tracked_changes(root: Path | str) -> list[str]:
    """Tracked files whose staged or unstaged content differs from HEAD (`diff --name-only
    HEAD`). Untracked files are not listed: a fast-forward keeps them, or refuses by itself."""
    out = run(root, ["diff", "--name-only", "-z", "HEAD", "--"]).stdout
    return [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]


def current_branch(root: Path | str) -> str | None:
    """The branch HEAD is on (`refs/heads/X` -> X), None when detached."""
    proc = run(root, ["symbolic-ref", "-q", "HEAD"], ok_codes=(0, 1))
    ref = proc.stdout.decode().strip()
    return ref[len("refs/heads/"):] if proc.returncode == 0 and ref.startswith("refs/heads/") else None

