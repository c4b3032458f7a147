"""gitopsctl stage: service groups in order, each healthy before the next; roll back all on failure."""

from __future__ import annotations

from gitopsctl.deploy.stage import StageResult


def stage(ctx, *, source: str | None = None, delay: float | None = None,
          timeout: float | None = None, allow_unbuilt: bool = False) -> StageResult:
    from gitopsctl.deploy.stage import stage as deploy_stage
    from gitopsctl.targets.factory import production_targets

    return deploy_stage(ctx, production_targets(ctx), source=source, delay=delay, timeout=timeout,
                        allow_unbuilt=allow_unbuilt)
