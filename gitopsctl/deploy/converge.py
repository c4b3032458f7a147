"""Bring targets to a revision and judge their services: apply and wait, or one look.

Targets come from a TargetSet (gitopsctl.targets): each target is applied once per
revision, however many of the services being converged run on it, and every service is
waited on by itself. Trouble reaching a target is an unhealthy report, never a crash.

wait_group() does that for a stage group at the same time: one thread per service, so a
group costs about its longest wait rather than the sum of them, all by one deadline.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from gitopsctl.errors import GitopsctlError
from gitopsctl.health import Check, HealthReport
from gitopsctl.targets import stoppable

# Once a verdict settles the group, the other waits are asked to stop; they get this long
# to notice before the engine goes on without them (a stop is checked every poll).
STOP_GRACE = 1.0
# A target's own timeout verdict says more than "no verdict": it gets this long past the
# deadline to give it, then the engine gives up on it.
LATE_GRACE = 3.0


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


@dataclass
class Verdict:
    service: str
    report: HealthReport
    elapsed: float           # from the start of the group's wait to this verdict
    stopped: bool = False    # no verdict of its own: stopped after another's failure


def wait_group(targets: Any, services: Sequence[str], revision: str, deadline: float, *,
               settles: Callable[[HealthReport], bool],
               on_verdict: Callable[[Verdict], None] | None = None) -> list[Verdict]:
    """Apply each target of `services` once at `revision`, then wait for all of them at once.

    The first service of the group on a target applies it; its group-mates there wait for
    that apply, then for themselves. Returns when every service has a verdict, or soon
    after one for which `settles(report)` is true (the others are stopped), or past the
    deadline. `on_verdict` sees each verdict as it comes, in this thread. Verdicts come
    back in the order they came; services left without one are appended: `stopped` when
    another's verdict settled the group, else failed on a "deadline" check.
    An exception that is not a GitopsctlError, raised in any wait, is raised here.
    """
    started = time.monotonic()
    stop = threading.Event()
    out: queue.Queue = queue.Queue()
    verdicts: list[Verdict] = []
    resolved: dict[str, Any] = {}
    for service in services:  # in this thread: a TargetSet builds its targets lazily
        try:
            resolved[service] = (targets.for_service(service), targets.target_name(service))
        except GitopsctlError as exc:
            verdicts.append(Verdict(service, _named(_unhealthy(service, exc, "deploy"), service, started), 0.0))
    gates: dict[str, _ApplyGate] = {}
    for service, (_, name) in resolved.items():
        gates.setdefault(name, _ApplyGate(owner=service))
    for service, (target, name) in resolved.items():
        threading.Thread(target=_converge_one, name=f"wait-{service}", daemon=True,
                         args=(target, service, name, gates[name], revision, deadline, stop, out,
                               started)).start()
    settled_at = next((time.monotonic() for v in verdicts if settles(v.report)), None)
    if settled_at is not None:
        stop.set()
    for verdict in verdicts:
        if on_verdict:
            on_verdict(verdict)
    pending = set(resolved)
    try:
        while pending:
            limit = deadline + LATE_GRACE if settled_at is None else settled_at + STOP_GRACE
            try:
                service, report, error = out.get(timeout=max(0.0, limit - time.monotonic()))
            except queue.Empty:
                break
            pending.discard(service)
            if error is not None:
                raise error
            verdict = Verdict(service, report, time.monotonic() - started,
                              stopped=bool(report.details.get("stopped")))
            verdicts.append(verdict)
            if on_verdict:
                on_verdict(verdict)
            if settled_at is None and settles(report):
                settled_at = time.monotonic()
                stop.set()
    finally:
        stop.set()  # whatever is still waiting has no one to report to
    blamed = next((v.service for v in verdicts if settles(v.report)), None)
    for service in (s for s in services if s in pending):
        verdicts.append(Verdict(service, _no_verdict(service, blamed, started),
                                time.monotonic() - started, stopped=blamed is not None))
    return verdicts


@dataclass
class _ApplyGate:
    """One target's apply at one revision, done by `owner`, awaited by its group-mates."""

    owner: str
    error: GitopsctlError | None = None

    def __post_init__(self) -> None:
        self.done = threading.Event()


def _converge_one(target: Any, service: str, name: str, gate: _ApplyGate, revision: str,
                  deadline: float, stop: threading.Event, out: queue.Queue, started: float) -> None:
    try:
        with stoppable(stop):
            report = _apply_then_wait(target, service, name, gate, revision, deadline)
        out.put((service, _named(report, service, started), None))
    except BaseException as exc:  # noqa: BLE001 - handed to the engine's thread, raised there
        out.put((service, None, exc))


def _apply_then_wait(target: Any, service: str, name: str, gate: _ApplyGate, revision: str,
                     deadline: float) -> HealthReport:
    if gate.owner == service:
        try:
            target.apply(revision, deadline)
        except GitopsctlError as exc:
            gate.error = exc
            return _unhealthy(service, exc, "deploy")
        finally:
            gate.done.set()
    elif not gate.done.wait(max(0.0, deadline - time.monotonic())):
        return HealthReport(target=service, healthy=False,
                            reason=f"{service}: target {name} was still being applied at the deadline",
                            details={"stopped_by": gate.owner})
    elif gate.error is not None:
        # One apply serves the whole target: its failure is blamed on the service that ran it.
        return HealthReport(target=service, healthy=False,
                            reason=f"{service}: not waited for: applying target {name} failed",
                            details={"stopped_by": gate.owner})
    try:
        return target.wait_healthy(revision, deadline)
    except GitopsctlError as exc:
        return _unhealthy(service, exc, "deploy")


def _named(report: HealthReport, service: str, started: float) -> HealthReport:
    report.target = service
    report.elapsed = report.elapsed or (time.monotonic() - started)
    return report


def _no_verdict(service: str, blamed: str | None, started: float) -> HealthReport:
    waited = time.monotonic() - started
    if blamed is not None:
        return HealthReport(target=service, healthy=False, elapsed=waited,
                            reason=f"{service}: not waited for any longer: {blamed} failed",
                            details={"stopped": True, "stopped_by": blamed})
    message = f"no verdict from its target {waited:.0f}s into the wait, past the deadline"
    return HealthReport(target=service, healthy=False, elapsed=waited,
                        reason=f"{service}: {message}", checks=[Check("deadline", False, message)])
