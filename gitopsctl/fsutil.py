"""Writing files so that a crash or an error never leaves half a file behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def write_atomic(path: Path, data: bytes | str, mode: int | None = None, *,
                 before_replace: Callable[[], None] | None = None) -> None:
    """Write to a temp file in the same directory, fsync, then rename over `path`.

    `mode` sets the permissions from the start (a secret is never briefly world-readable);
    without it an existing file keeps its mode, and a new one gets the umask's default.
    `before_replace` runs at the last moment before the rename and may raise to stop it.
    The directory is fsynced after the rename, so the new name survives a power cut.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        else:
            try:
                os.fchmod(fd, path.stat().st_mode & 0o7777)
            except FileNotFoundError:
                os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(str(path.parent))


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
