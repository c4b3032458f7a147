"""gitopsctl stage: services in order, each healthy before the next; roll back all on failure."""

from __future__ import annotations

from gitopsctl.deploy.stage import StageResult
from gitopsctl.deploy.stage import stage as _stage


def stage(ctx, *, source: str | None = None, delay: float | None = None,
          timeout: float | None = None, allow_unbuilt: bool = False) -> StageResult:
    return _stage(ctx, source=source, delay=delay, timeout=timeout, allow_unbuilt=allow_unbuilt)
