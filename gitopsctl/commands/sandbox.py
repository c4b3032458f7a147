"""gitopsctl sandbox demo|up|down: the whole homelab on this machine (gitopsctl/sandbox/run.py)."""

from __future__ import annotations

from pathlib import Path

from gitopsctl.sandbox.run import DEFAULT_DOWN_TIMEOUT, DEFAULT_STAGE_DELAY
from gitopsctl.sandbox.run import sandbox as _sandbox


def sandbox(ctx, *, action: str, workdir: Path | None = None, keep: bool = False,
            stage_delay: float = DEFAULT_STAGE_DELAY, timeout: float = DEFAULT_DOWN_TIMEOUT):
    return _sandbox(ctx, action=action, workdir=workdir, keep=keep, stage_delay=stage_delay,
                    timeout=timeout)
