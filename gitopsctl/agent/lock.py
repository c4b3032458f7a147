"""One sync per checkout at a time: the timer and CI may start one together."""

from __future__ import annotations

import errno
import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from gitopsctl.errors import ExternalError


@contextmanager
def sync_lock(path: Path, deadline: float, rep) -> Iterator[None]:
    """One sync at a time (timer and CI may overlap); wait with progress until deadline."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try(fd):
            with rep.status(f"waiting for the sync lock {path}") as status:
                while not _try(fd):
                    if time.monotonic() >= deadline:
                        raise ExternalError(f"another sync holds {path}; gave up waiting",
                                            hint="a sync from the timer or CI is still running; "
                                                 "retry, or raise --wait-timeout")
                    status.update("another sync is running")
                    time.sleep(0.2)
            rep.success("got the sync lock")
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def _try(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
