"""gitopsctl rollback: revert the latest deploy of every service in one commit, then verify.

By hand from a terminal, or by `stage` on a failed check. Rerunning it never reverts a
second release; `--to SOURCE` goes further back explicitly.
"""

from __future__ import annotations

from gitopsctl.deploy.rollback import RollbackResult


def rollback(ctx, *, to: str | None = None, source: str | None = None, reason: str | None = None,
             dry_run: bool = False, verify: bool = True) -> RollbackResult:
    from gitopsctl.deploy.rollback import rollback as deploy_rollback
    from gitopsctl.targets.factory import production_targets

    return deploy_rollback(ctx, production_targets(ctx), to=to, source=source, reason=reason,
                           dry_run=dry_run, verify=verify)
