"""Bring a target to a revision and judge it: apply and wait, or one look."""

from __future__ import annotations

import time

from gitopsctl.errors import GitopsctlError
from gitopsctl.health import Check, HealthReport


def target_of(ctx, service: str):
    from gitopsctl.targets.factory import target_for

    return target_for(ctx.config, service, environ=ctx.environ, progress=ctx.reporter.debug,
                      reporter=ctx.reporter, repo_path=ctx.repo)


def apply_and_wait(target, service: str, revision: str, deadline: float) -> HealthReport:
    """apply + wait_healthy; an exception becomes an unhealthy report, never a crash."""
    started = time.monotonic()
    try:
        target.apply(revision, deadline)
        report = target.wait_healthy(revision, deadline)
    except GitopsctlError as exc:
        report = getattr(exc, "report", None)
        if report is None:
            report = HealthReport(target=service, healthy=False, reason=f"{service}: {exc.message}",
                                  checks=[Check("deploy", False, exc.message,
                                                [exc.hint] if exc.hint else [])])
    report.elapsed = report.elapsed or (time.monotonic() - started)
    return report


def check_once(ctx, service: str) -> HealthReport:
    """One look at a service's health; trouble reaching it is an unhealthy report."""
    try:
        report = target_of(ctx, service).check_health()
    except GitopsctlError as exc:
        report = HealthReport(target=service, healthy=False, reason=exc.message)
    report.target = service
    return report


def converge_all(ctx, revision: str) -> list[HealthReport]:
    """Re-reconcile and re-sync every service's target at `revision`, and wait for health."""
    reports = []
    for service in ctx.config.stage.order:
        try:
            target = target_of(ctx, service)
        except GitopsctlError as exc:
            reports.append(HealthReport(target=service, healthy=False, reason=exc.message))
            continue
        deadline = time.monotonic() + ctx.config.timeouts.failure
        ctx.reporter.waiting(f"{service}: applying {revision[:7]} and waiting for health")
        report = apply_and_wait(target, service, revision, deadline)
        report.target = service
        reports.append(report)
    return reports
