"""Reading files out of commits, never out of the working tree: tree listings, blobs,
grep, and the build context as a tar."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from gitopsctl.errors import ExternalError, InputError
from gitopsctl.repo.runner import run, succeeds, text

SYMLINK_MODE = "120000"
SUBMODULE_MODE = "160000"
# A build context is held in memory on its way to the Docker engine; past this it is
# almost certainly a data directory committed by mistake.
ARCHIVE_LIMIT = 1 << 30
ARCHIVE_TIMEOUT = 300.0


@dataclass(frozen=True)
class TreeFile:
    path: str   # repo-relative, "/"-separated, as git prints it
    mode: str   # 100644, 100755, 120000 (link), 160000 (submodule)
    blob: str

    @property
    def is_link(self) -> bool:
        return self.mode == SYMLINK_MODE


def tree_files(root: Path | str, rev: str, paths: Sequence[str]) -> list[TreeFile]:
    """Files at or under `paths` (repo-relative) in the tree of `rev`, without following links."""
    if not paths:
        return []
    out = run(root, ["ls-tree", "-r", "-z", "--full-tree", rev, "--", *paths]).stdout
    files = []
    for entry in out.decode("utf-8", "surrogateescape").split("\0"):
        if not entry:
            continue
        meta, path = entry.split("\t", 1)
        mode, kind, blob = meta.split()
        if kind == "blob":
            files.append(TreeFile(path, mode, blob))
    return files


def read_blobs(root: Path | str, blobs: Iterable[str]) -> dict[str, bytes]:
    """Contents of blobs by id, in one `git cat-file --batch`."""
    wanted = list(dict.fromkeys(blobs))
    if not wanted:
        return {}
    out = run(root, ["cat-file", "--batch"], data="".join(b + "\n" for b in wanted).encode()).stdout
    result: dict[str, bytes] = {}
    pos = 0
    for blob in wanted:
        header_end = out.index(b"\n", pos)
        parts = out[pos:header_end].decode().split()
        if len(parts) < 3:
            raise ExternalError(f"git cat-file: object {blob} is missing")
        size = int(parts[2])
        start = header_end + 1
        result[blob] = out[start:start + size]
        pos = start + size + 1
    return result


def grep_files(root: Path | str, rev: str, needle: str, globs: Sequence[str]) -> list[str]:
    """Paths of files in the tree of `rev` containing `needle` (a fixed string)."""
    proc = run(root, ["grep", "-l", "-z", "--fixed-strings", "-e", needle, rev, "--", *globs],
               ok_codes=(0, 1))
    prefix = f"{rev}:"
    return [p[len(prefix):] if p.startswith(prefix) else p
            for p in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if p]


def worktree_files(root: Path | str, globs: Sequence[str]) -> list[str]:
    """Files git sees in the work tree matching `globs`: tracked, and untracked unless
    ignored (repo-relative). Deleted tracked files are listed too; callers check."""
    out = run(root, ["ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *globs]).stdout
    return [p for p in dict.fromkeys(out.decode("utf-8", "surrogateescape").split("\0")) if p]


def object_type(root: Path | str, treeish: str) -> str | None:
    """"commit", "tree", "blob" or "tag" for `treeish` (e.g. `SHA:dir`); None when absent."""
    proc = run(root, ["cat-file", "-t", treeish], ok_codes=(0, 1, 128))
    if proc.returncode != 0:
        return None
    return proc.stdout.decode().strip() or None


def has_path(root: Path | str, sha: str, path: str) -> bool:
    """Whether `path` (repo-relative) exists in the tree of commit `sha`."""
    return succeeds(root, ["cat-file", "-e", f"{sha}:{path.strip('/')}"])


def archive(root: Path | str, treeish: str, *, max_bytes: int = ARCHIVE_LIMIT,
            timeout: float = ARCHIVE_TIMEOUT) -> bytes:
    """`git archive --format=tar TREEISH`, refused before it starts if larger than `max_bytes`.

    The size is the files' sizes plus tar's headers and padding, read from the tree, so
    nothing is held in memory only to be thrown away."""
    listing = text(root, ["ls-tree", "-r", "-l", "-z", "--full-tree", treeish])
    size, count = 0, 0
    for entry in listing.split("\0"):
        meta = entry.split("\t", 1)[0].split()
        if len(meta) == 4 and meta[1] == "blob":
            count += 1
            size += 512 + (int(meta[3]) + 511) // 512 * 512
    if size > max_bytes:
        raise InputError(f"{treeish} holds {count} files, {size / 2**20:.0f} MiB as a tar; "
                         f"gitopsctl sends at most {max_bytes / 2**20:.0f} MiB to the engine",
                         hint="move large files out of the build context directory")
    return run(root, ["archive", "--format=tar", treeish], timeout=timeout).stdout
