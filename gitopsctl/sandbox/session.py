"""Lifecycle of a sandbox: its work directory, its signals, and what the machine must have.

What it leaves behind is checked in `leftovers`; the file `up` leaves for `down` is
`state`.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from gitopsctl.errors import ExternalError, UsageError

_PREFIX = "gitopsctl-sandbox-"


# ------------------------------------------------------------------ work directory

def prepare_workdir(requested: Path | None) -> tuple[Path, bool]:
    """(directory, created_by_us). A requested directory must be new or empty."""
    if requested is None:
        return Path(tempfile.mkdtemp(prefix=_PREFIX)), True
    path = requested.expanduser().resolve()
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"{path} is not a directory", hint="pass --dir a new or empty directory")
        if any(path.iterdir()):
            raise UsageError(f"{path} is not empty",
                             hint="pass --dir a new or empty directory; the sandbox fills it and "
                                  "removes what it made when it ends")
        return path, False
    path.mkdir(parents=True)
    return path, True


def remove_workdir(path: Path, created: bool) -> None:
    """Delete what the sandbox made: the directory itself if it made it, else its contents."""
    if created:
        shutil.rmtree(path, ignore_errors=True)
        return
    for child in path.iterdir() if path.exists() else ():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


# ------------------------------------------------------------------ signals

_STOP_SIGNALS = tuple(s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)


@contextmanager
def interrupts_as_keyboard_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP end the sandbox the way Ctrl-C does, so clean-up always runs."""
    def raise_interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    with _handled_by(raise_interrupt, _STOP_SIGNALS):
        yield


@contextmanager
def shielded(notice: Callable[[str], None]) -> Iterator[None]:
    """While cleaning up, a second Ctrl-C or SIGTERM must not leave half the services running."""
    def hold_on(signum: int, frame: Any) -> None:
        notice(f"{signal.Signals(signum).name} received: still cleaning up, please wait")

    with _handled_by(hold_on, (signal.SIGINT, *_STOP_SIGNALS)):
        yield


@contextmanager
def _handled_by(handler: Callable[[int, Any], None], signals: tuple) -> Iterator[None]:
    saved = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for sig, previous in saved.items():
            signal.signal(sig, previous)


def require_tools() -> None:
    """Fail early, with the fix, when this machine lacks what the lab needs."""
    missing = [name for name, paths in (("dockerd", ("/usr/sbin", "/usr/bin")),
                                        ("docker-registry", ("/usr/bin", "/usr/sbin")),
                                        ("sshd", ("/usr/sbin",)), ("git", ("/usr/bin",)))
               if shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *paths])) is None]
    if missing and not (len(missing) == 1 and missing[0] == "dockerd" and _engine_reachable()):
        raise ExternalError(f"this machine lacks {', '.join(missing)} for the sandbox",
                            hint="Debian: apt-get install docker.io docker-registry "
                                 "openssh-server busybox-static git (scripts/setup in the "
                                 "gitopsctl repository does this)")


def _engine_reachable() -> bool:
    from gitopsctl.sandbox.lab.dockerd import ping

    hosts = [os.environ["DOCKER_HOST"]] if os.environ.get("DOCKER_HOST") else []
    return any(ping(h) for h in (*hosts, "unix:///var/run/docker.sock"))
