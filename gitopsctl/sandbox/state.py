"""The state file `sandbox up` writes for `sandbox down`, and stopping that process."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Callable

from gitopsctl.errors import UsageError

STATE_FILE = "sandbox-state.json"
ENV_FILE = "sandbox.env"


def pointer_file(environ: dict[str, str] | None = None) -> Path:
    """Where `up` records its directory so a bare `down` finds it."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME") or "~").expanduser() / ".local" / "state")
    return Path(base) / "gitopsctl" / "sandbox-dir"


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """gitopsctl.fsutil.write_atomic, creating the directory first (the state home may be new)."""
    from gitopsctl.fsutil import write_atomic as write

    path.parent.mkdir(parents=True, exist_ok=True)
    write(path, text, mode)


def write_state(workdir: Path, state: dict, environ: dict[str, str] | None = None) -> Path:
    path = workdir / STATE_FILE
    write_atomic(path, json.dumps(state, indent=2) + "\n")
    try:
        write_atomic(pointer_file(environ), str(workdir) + "\n")
    except OSError:
        pass  # only a convenience for `down` without --dir
    return path


def clear_state(workdir: Path, environ: dict[str, str] | None = None) -> None:
    (workdir / STATE_FILE).unlink(missing_ok=True)
    pointer = pointer_file(environ)
    try:
        if pointer.read_text().strip() == str(workdir):
            pointer.unlink()
    except OSError:
        pass


def find_state(requested: Path | None, environ: dict[str, str] | None = None) -> tuple[Path, dict]:
    """(state file, state) from --dir, else from the directory `up` last recorded."""
    if requested is not None:
        workdir = requested.expanduser().resolve()
    else:
        pointer = pointer_file(environ)
        try:
            workdir = Path(pointer.read_text().strip())
        except OSError:
            raise UsageError("no running sandbox is recorded",
                             hint=f"pass --dir DIR (the directory `gitopsctl sandbox up` printed); "
                                  f"{pointer} does not exist") from None
    path = workdir / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except OSError:
        raise UsageError(f"no sandbox state file at {path}",
                         hint="is the sandbox still running? `gitopsctl sandbox up` writes it once "
                              "everything has started and removes it when it stops") from None
    except json.JSONDecodeError as exc:
        from gitopsctl.errors import InputError, Location

        raise InputError(f"the sandbox state file is not JSON: {exc.msg}",
                         location=Location(str(path), exc.lineno, exc.colno),
                         hint="stop the `sandbox up` process with Ctrl-C in its terminal") from None
    if not isinstance(state, dict) or not isinstance(state.get("pid"), int):
        raise UsageError(f"{path} names no process", hint="stop `sandbox up` with Ctrl-C in its terminal")
    return path, state


def is_sandbox_process(pid: int) -> bool:
    """The pid is alive and is a `gitopsctl sandbox up` (pids get reused)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    words = [w.decode(errors="replace") for w in cmd]
    return state != "Z" and "sandbox" in words and "up" in words


def stop_process(pid: int, deadline_seconds: float, progress: Callable[[float], None]) -> bool:
    """SIGTERM the `up` process and wait for it to finish cleaning up; True if it did."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    start = time.monotonic()
    last = 0.0
    while time.monotonic() - start < deadline_seconds:
        if not is_sandbox_process(pid):
            return True
        elapsed = time.monotonic() - start
        if elapsed - last >= 5:
            last = elapsed
            progress(elapsed)
        time.sleep(0.2)
    return not is_sandbox_process(pid)
