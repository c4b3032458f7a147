"""Run the real CLI in the sandbox's CI clone, as a CI runner would, and relay its progress.

Lab.gitopsctl() captures everything; the demo instead streams each stderr line to the
person watching while the JSON document collects on stdout, so a 60 s stage never looks
frozen. Every run has a deadline: a child that outlives it is terminated, then killed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from gitopsctl.errors import ExternalError

# A stage that rolls back waits for the failure deadline twice at most (deploy, then
# verification of the old version); this bounds a run that hangs for another reason.
DEFAULT_DEADLINE = 600.0
_TERMINATE_GRACE = 10.0


@dataclass
class CliRun:
    args: tuple[str, ...]
    returncode: int
    document: dict | None
    stderr: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def last_error(self) -> str:
        """The most telling line for a report: the JSON error, else the last stderr line."""
        if self.document and isinstance(self.document.get("error"), dict):
            return str(self.document["error"].get("message", ""))
        return self.stderr[-1] if self.stderr else f"exit {self.returncode}"


def run_cli(args: Sequence[str], *, cwd: Path, env: Mapping[str, str],
            relay: Callable[[str], None] = lambda line: None,
            deadline: float = DEFAULT_DEADLINE) -> CliRun:
    """`python -m gitopsctl -o json ARGS` in cwd; stderr lines go to relay as they come."""
    argv = [sys.executable, "-m", "gitopsctl", "-o", "json", *args]
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace")
    stderr: list[str] = []
    stdout: list[str] = []
    readers = [threading.Thread(target=_pump, args=(proc.stderr, stderr, relay), daemon=True),
               threading.Thread(target=_pump, args=(proc.stdout, stdout, None), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        proc.wait(timeout=deadline)
    except subprocess.TimeoutExpired:
        _stop(proc)
        raise ExternalError(f"`gitopsctl {' '.join(args)}` did not finish within {deadline:.0f}s",
                            hint="its last output: " + (stderr[-1] if stderr else "(none)")) from None
    except BaseException:
        # Ctrl-C or SIGTERM while a deploy runs: the child must not outlive the sandbox.
        _stop(proc)
        raise
    for reader in readers:
        reader.join(timeout=5)
    return CliRun(tuple(args), proc.returncode, _parse(stdout), stderr,
                  round(time.monotonic() - started, 3))


def _pump(stream, sink: list[str], relay: Callable[[str], None] | None) -> None:
    for line in stream:
        line = line.rstrip("\n")
        sink.append(line)
        if relay is not None and line.strip():
            try:
                relay(line)
            except Exception:  # a display problem must not lose the child's output
                pass
    stream.close()


def _parse(lines: list[str]) -> dict | None:
    try:
        doc = json.loads("\n".join(lines))
    except json.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=_TERMINATE_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=_TERMINATE_GRACE)
