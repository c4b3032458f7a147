"""Bring targets to a revision and judge their services: apply and wait, or one look.

Targets come from a TargetSet (gitopsctl.targets): each target is applied once per
revision, however many of the services being converged run on it, and every service is
waited on by itself. Trouble reaching a target is an unhealthy report, never a crash.
"""

from __future__ import annotations

import time
from typing import Any, Iterable

from gitopsctl.errors import GitopsctlError
from gitopsctl.health import Check, HealthReport


def apply_and_wait(targets: Any, service: str, revision: str, deadline: float,
                   applied: set[str]) -> HealthReport:
    """Apply `service`'s target unless `applied` already names it, then wait for `service`.

    `applied` collects the names of the targets this revision was applied to.
    """
    started = time.monotonic()
    try:
        target = targets.for_service(service)
        name = targets.target_name(service)
        if name not in applied:
            target.apply(revision, deadline)
            applied.add(name)
        report = target.wait_healthy(revision, deadline)
    except GitopsctlError as exc:
        report = _unhealthy(service, exc, "deploy")
    report.target = service
    report.elapsed = report.elapsed or (time.monotonic() - started)
    return report


def check_once(targets: Any, service: str) -> HealthReport:
    """One look at a service's health."""
    try:
        report = targets.for_service(service).check_health()
    except GitopsctlError as exc:
        report = HealthReport(target=service, healthy=False, reason=exc.message)
    report.target = service
    return report


def observe(targets: Any, service: str, deadline: float, mismatch) -> HealthReport:
    """A read-only watch of `service` until healthy or the deadline (verify)."""
    started = time.monotonic()
    try:
        report = targets.for_service(service).observe(deadline, mismatch)
    except GitopsctlError as exc:
        report = _unhealthy(service, exc, "observe")
        report.elapsed = time.monotonic() - started
    report.target = service
    return report


def converge_all(targets: Any, services: Iterable[str], revision: str, timeout: float,
                 reporter: Any) -> list[HealthReport]:
    """Apply every target of `services` at `revision` once and wait for each service."""
    applied: set[str] = set()
    reports = []
    for service in services:
        reporter.waiting(f"{service}: applying {revision[:7]} and waiting for health")
        reports.append(apply_and_wait(targets, service, revision, time.monotonic() + timeout,
                                      applied))
    return reports


def _unhealthy(service: str, exc: GitopsctlError, check: str) -> HealthReport:
    report = getattr(exc, "report", None)
    if report is None:
        report = HealthReport(target=service, healthy=False, reason=f"{service}: {exc.message}",
                              checks=[Check(check, False, exc.message,
                                            [exc.hint] if exc.hint else [])])
    return report
