"""gitopsctl diff: what a stage of a source would change (files, kustomize, compose), changing nothing."""

from __future__ import annotations

from gitopsctl.deploy.diffing import DiffResult


def diff(ctx, *, source: str | None = None, service: str | None = None,
         allow_unbuilt: bool = False, exit_code: bool = False) -> DiffResult:
    from gitopsctl.deploy.diffing import diff as deploy_diff

    return deploy_diff(ctx, source=source, service=service, allow_unbuilt=allow_unbuilt,
                       exit_code=exit_code)
