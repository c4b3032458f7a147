"""gitopsctl verify: the health checks alone, against what git says is live. Read-only.

Nothing is written anywhere: no reconcile request to Flux, no sync on the VM, no commit.
The engine's docstring (gitopsctl/deploy/verify.py) says what each target is checked for.
"""

from __future__ import annotations

from gitopsctl.deploy.verify import VerifyResult


def verify(ctx, *, services: list[str] | None = None, targets: list[str] | None = None,
           timeout: float | None = None) -> VerifyResult:
    from gitopsctl.deploy.verify import verify as deploy_verify
    from gitopsctl.targets.factory import production_targets

    return deploy_verify(ctx, production_targets(ctx), services=services, on_targets=targets,
                         timeout=timeout)
