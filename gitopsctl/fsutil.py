"""The one atomic write: a crash or an error never leaves half a file, and never a file
written through (or replacing) a symbolic link."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Callable

from gitopsctl.errors import InputError, Location


def write_atomic(path: Path | str, data: bytes | str, mode: int | None = None, *,
                 expected: bytes | str | None = None,
                 before_replace: Callable[[], None] | None = None) -> None:
    """Write to a temp file in the same directory, fsync, then rename over `path`.

    `mode` sets the permissions from the start (a secret is never briefly world-readable);
    without it an existing file keeps its mode, and a new one gets the umask's default.
    An existing `path` must be a regular file, opened without following links; with
    `expected` it must still hold exactly that (an edit computed from an earlier read
    does not overwrite someone else's change). `before_replace` runs at the last moment
    before the rename and may raise to stop it. The directory is fsynced after the
    rename, so the new name survives a power cut. On any failure `path` is untouched.
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    current_mode = _check_current(path, expected.encode("utf-8") if isinstance(expected, str)
                                  else expected)
    if mode is None:
        mode = current_mode if current_mode is not None else 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if before_replace is not None:
            before_replace()
        if os.path.islink(path):  # swapped in while we wrote: the last moment to refuse
            raise InputError(f"{path} became a symbolic link; not replaced",
                             location=Location(str(path)), hint="no file was changed")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(str(path.parent))


def _check_current(path: Path, expected: bytes | None) -> int | None:
    """The mode of the file `path` holds now (None: no file yet), after refusing a link,
    a non-regular file, or content other than `expected`."""
    display = str(path)
    try:
        # O_NONBLOCK: a FIFO put there must not hang the open; it is refused below
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except PermissionError:
        info = os.lstat(path)  # unreadable to us but replaceable: the directory decides
        if expected is not None or not stat.S_ISREG(info.st_mode):
            raise
        return info.st_mode & 0o7777
    except OSError:
        if os.path.islink(path):
            raise InputError(f"{display} is a symbolic link; gitopsctl never writes through or "
                             "replaces a link", location=Location(display),
                             hint="edit the file it points to; no file was changed") from None
        raise
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{display} is not a regular file", location=Location(display))
        if expected is not None and handle.read() != expected:
            raise InputError(f"{display} changed while gitopsctl was editing it",
                             location=Location(display),
                             hint="run the command again; no file was changed")
        return info.st_mode & 0o7777


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the rename itself is done
    finally:
        os.close(fd)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
