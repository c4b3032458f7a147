"""A remote sync's answer as HealthReports: the VM target's, and each of its services'.

The VM judges each service by its own checks and answers with one verdict per service
(`services`) and one for the target (`health`, checks named "service: check"). Trouble
that is the target's, not one service's (SSH, the sync itself failing, a pull, the
revision the VM is at, `compose up` failing while every service looks healthy), fails
every service; a failing service check fails that service and the target.

CI then probes the services' http and tcp checks from its own side: the VM's "healthy"
must hold from where users come in too. A compose check can only be seen on the VM.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from gitopsctl.health import Check, HealthReport, probe_check
from gitopsctl.targets import stop_requested

_TARGET_CHECKS = ("pull", "compose-up", "checkout", "revision", "ssh", "sync")


def whole_report(target: str, run: Any, revision: str | None) -> HealthReport:
    """The target's report from one RemoteRun (its document, or why there is none)."""
    if run.error is not None:
        err = run.error
        return HealthReport(target=target, healthy=False, reason=err.message, revision=revision,
                            checks=[Check("ssh", False, err.message,
                                          evidence=[err.hint] if err.hint else [])],
                            details={"error": err.to_dict()})
    doc = run.document or {}
    if isinstance(doc.get("error"), dict):
        message = str(doc["error"].get("message", "remote sync failed"))
        return HealthReport(target=target, healthy=False, reason=f"VM sync failed: {message}",
                            revision=revision,
                            checks=[Check("sync", False, message, evidence=run.stderr_tail)],
                            details={"remote": doc})
    checks = [_check(c) for c in (doc.get("health") or {}).get("checks", [])]
    healthy = bool(doc.get("healthy")) and run.exit_code == 0
    live = doc.get("revision")
    reason = "" if healthy else str(doc.get("reason") or (doc.get("health") or {}).get("reason")
                                    or f"remote sync exited {run.exit_code}")
    if revision and live and not str(live).startswith(revision):
        checks.append(Check("revision", False, f"VM is at {live}, expected {revision}"))
        if healthy:
            healthy, reason = False, f"VM is at {str(live)[:12]}, expected {revision[:12]}"
    return HealthReport(target=target, healthy=healthy, reason=reason, revision=live,
                        checks=checks, details={"remote": doc})


def service_report(whole: HealthReport, service: str) -> HealthReport:
    """One service's part of the target's report."""
    doc = whole.details.get("remote") or {}
    mine = next((s for s in doc.get("services") or [] if s.get("name") == service), None)
    if mine is None:  # no answer for this service (SSH, the sync failed, an older gitopsctl)
        return HealthReport(target=service, healthy=whole.healthy, reason=whole.reason,
                            revision=whole.revision, checks=list(whole.checks),
                            elapsed=whole.elapsed, details=whole.details)
    checks = [_check({**c, "name": f"{service}: {c.get('name', '?')}"}) for c in mine.get("checks", [])]
    healthy, reason = bool(mine.get("healthy")), str(mine.get("reason") or "")
    blamed = _target_failure(whole, doc)
    if blamed is not None:
        checks.insert(0, blamed)
        if healthy:
            healthy, reason = False, whole.reason or blamed.message
    checks += [c for c in whole.checks if c.name.startswith(f"{service}: ") and c.name.endswith("-ci")]
    # where the checkout stands is the target's, and every service's verdict rests on it
    checks += [c for c in whole.checks if c.name == "revision" and c.ok]
    if healthy and any(not c.ok for c in checks):
        failed = next(c for c in checks if not c.ok)
        healthy, reason = False, failed.message
    elif reason and not reason.startswith(f"{service}:"):
        reason = f"{service}: {reason}"
    details = {"remote": doc, **({"stopped_by": mine["stopped_by"]} if mine.get("stopped_by") else {}),
               **({"stopped": True} if whole.details.get("stopped") else {})}
    return HealthReport(target=service, healthy=healthy, reason=reason, revision=whole.revision,
                        checks=checks, elapsed=whole.elapsed, details=details)


def _target_failure(whole: HealthReport, doc: dict) -> Check | None:
    """The failing check that is the target's own, if any."""
    services_failing = any(not s.get("healthy") for s in doc.get("services") or [])
    for check in whole.checks:
        if check.ok or check.name not in _TARGET_CHECKS:
            continue
        if check.name == "compose-up" and services_failing:
            continue  # `up --wait` failed because of the service the verdicts name
        return check
    return None


def ci_probes(config: Any, services: Sequence[str]) -> list[tuple[str, Any]]:
    """(service, check) for every http and tcp check of `services`."""
    return [(name, check) for name in services for check in config.service(name).health
            if check.kind in ("http", "tcp")]


def confirm_from_ci(report: HealthReport, config: Any, services: Sequence[str],
                    deadline: float) -> None:
    """The VM said healthy; CI must see the http and tcp checks pass from its side too.

    The VM has just seen these same checks pass `healthy_samples` times in a row, which
    is what says the service stays up; what CI adds is that its users' way in works. So
    one passing look per check is enough here, and looks repeat (timeouts.sample_interval
    apart) only while one fails. Bounded by `deadline`; appends one check per probe,
    named "service: http-ci"."""
    probes = ci_probes(config, services)
    if not probes:
        return
    interval = config.timeouts.sample_interval
    while True:
        last = [probe_check(check, config.timeouts.http) for _, check in probes]
        if all(ok for ok, _ in last) or time.monotonic() + interval > deadline:
            break
        if stop_requested():
            report.details["stopped"] = True
            break
        time.sleep(interval)
    for (service, check), (passed, message) in zip(probes, last):
        note = " (from CI, after the VM's samples)" if passed else " (from CI)"
        report.checks.append(Check(f"{service}: {check.kind}-ci", passed, message + note,
                                   evidence=[] if passed else [message]))
        if not passed and report.healthy:
            report.healthy = False
            report.reason = f"{service}: {check.label} failed from CI: {message}"


def look_from_ci(config: Any, target: str, services: Sequence[str]) -> HealthReport:
    """One look from CI at the http and tcp checks of `services` (no SSH)."""
    start = time.monotonic()
    checks = []
    for service, check in ci_probes(config, services):
        ok, message = probe_check(check, config.timeouts.http)
        checks.append(Check(f"{service}: {check.kind}", ok, message))
    failed = next((c for c in checks if not c.ok), None)
    return HealthReport(target=target, healthy=failed is None, checks=checks,
                        reason="" if failed is None else f"{failed.name.split(':')[0]}: {failed.message}",
                        elapsed=time.monotonic() - start)


def _check(doc: dict) -> Check:
    return Check(str(doc.get("name", "?")), bool(doc.get("ok")), str(doc.get("message", "")),
                 [str(e) for e in doc.get("evidence", [])])
