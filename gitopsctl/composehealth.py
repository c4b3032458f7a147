"""Judging the gitopsctl services of one VM target from the Docker engine (runs ON the VM).

Each service owns compose services (the whole compose file when it names none). One look
judges every service of the target:

- every container of every compose service it owns runs the image the compose file asks
  for (an `@sha256:` pin against RepoDigests, a tag against the image ID the pull
  resolved), is running, is healthy when it has a healthcheck, and its restart count does
  not climb while watched; unhealthy, restarting, exited, dead or a kept old image fails
  at once, with the container's state, exit code, restarts and last log lines. A
  `compose:` check names such a compose service in the config; the compose services a
  service owns without one are judged the same way (check "containers"), so no service
  needs an HTTP endpoint;
- its http and tcp checks, probed from the VM once its containers are ready.

The target is healthy after `samples` consecutive looks in which every service is ready.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from gitopsctl.compose import ContainerLook, ExpectedImage, container_logs, look_at
from gitopsctl.health import Check, HealthReport, probe_check

SAMPLE_INTERVAL = 0.5  # the default of timeouts.sample_interval
_FATAL_STATES = ("restarting", "exited", "dead")


@dataclass(frozen=True)
class ServiceRules:
    """How one gitopsctl service on the target is judged."""

    name: str
    compose_services: tuple[str, ...]          # owned and defined by the compose file
    named: frozenset[str] = frozenset()        # those with an explicit `compose:` check
    probes: tuple[Any, ...] = ()               # its http and tcp HealthChecks
    missing: tuple[str, ...] = ()              # named in the config, not in the compose file


def rules_for(config: Any, target: str, in_file: Sequence[str]) -> list[ServiceRules]:
    """The rules of every service bound to `target`, given the compose file's services.

    A target no service is bound to is judged as one unnamed whole, like v1's backend.
    """
    rules = []
    for name in config.services_on(target):
        svc = config.service(name)
        owned = tuple(svc.compose_services) or tuple(in_file)
        named = frozenset(c.service for c in svc.health if c.kind == "compose")
        wanted = list(dict.fromkeys([*owned, *sorted(named - set(owned))]))
        rules.append(ServiceRules(
            name=name, compose_services=tuple(c for c in wanted if c in in_file), named=named,
            probes=tuple(c for c in svc.health if c.kind in ("http", "tcp")),
            missing=tuple(c for c in wanted if c not in in_file)))
    return rules or [ServiceRules(name=target, compose_services=tuple(in_file))]


def owned(rules: Sequence[ServiceRules]) -> list[str]:
    """Every compose service some rule judges, each once."""
    return list(dict.fromkeys(c for r in rules for c in r.compose_services))


@dataclass
class ServiceVerdict:
    name: str
    healthy: bool = False
    reason: str = ""
    checks: list[Check] = field(default_factory=list)
    fatal: Check | None = None
    ready: bool = False
    in_row: int = 0
    stopped_by: str | None = None  # the service whose failure ended the wait before this one's verdict

    def to_dict(self) -> dict:
        return {"name": self.name, "healthy": self.healthy, "reason": self.reason,
                "checks": [c.to_dict() for c in self.checks],
                **({"stopped_by": self.stopped_by} if self.stopped_by else {})}


@dataclass
class TargetVerdict:
    report: HealthReport                 # the whole target; checks named "service: check"
    services: list[ServiceVerdict]


@dataclass
class _Judged:
    state: str                           # ok | pending | fatal
    message: str
    evidence: list[str] = field(default_factory=list)


def container_failure(look: ContainerLook, restarts_before: int) -> str | None:
    """What is wrong with one container on its own (its image aside), or None."""
    if look.status in _FATAL_STATES:
        return f"is {look.status}"
    if look.health == "unhealthy":
        return "is unhealthy"
    if look.restart_count > restarts_before:
        return f"restarted {look.restart_count - restarts_before} time(s) while being watched"
    return None


def container_up(look: ContainerLook) -> bool:
    """Running, and healthy or without a healthcheck: nothing left to wait for."""
    return look.status == "running" and look.health != "starting"


def _judge_containers(client: Any, compose_service: str, mine: list[ContainerLook],
                      expected: ExpectedImage | None, baseline: dict[str, int]) -> _Judged:
    if not mine:
        return _Judged("fatal", f"compose service {compose_service} has no container")
    messages, pending = [], False
    for look in mine:
        first = baseline.setdefault(look.name, look.restart_count)
        problem = container_failure(look, first)
        if problem is None and expected is not None and not expected.matches(look):
            want = expected.digest or expected.image_id or expected.reference
            problem = (f"runs image {look.image_id[:19]} but the compose file asks for "
                       f"{expected.reference} ({want[:19]}): the stack kept the old image")
        if problem:
            evidence = [look.describe()] + [f"log: {line}" for line in container_logs(client, look.name)]
            return _Judged("fatal", f"compose service {compose_service}: {look.describe()}: {problem}",
                           evidence)
        if not container_up(look):
            pending = True
            messages.append(f"{look.describe()}: not ready yet")
        elif look.health is None:
            messages.append(f"{look.describe()}: running (warning: no healthcheck, "
                            "only 'running' can be checked)")
        else:
            messages.append(f"{look.describe()}: healthy")
    return _Judged("pending" if pending else "ok",
                   f"compose service {compose_service}: " + "; ".join(messages))


def look_once(client: Any, project: str, expected: Mapping[str, ExpectedImage],
              rules: Sequence[ServiceRules], baseline: dict[str, int],
              http_timeout: float) -> list[ServiceVerdict]:
    """One look at every service of the target."""
    by_service: dict[str, list[ContainerLook]] = {}
    for look in look_at(client, project):
        by_service.setdefault(look.service, []).append(look)
    judged: dict[str, _Judged] = {}      # a compose service two services own is looked at once
    out = []
    for rule in rules:
        verdict = ServiceVerdict(rule.name, ready=True)
        for missing in rule.missing:
            verdict.fatal = Check("compose", False, f"compose service {missing} is not defined in "
                                  "the compose file", evidence=["named by the service's "
                                  "compose_services or a compose health check in gitopsctl.yaml"])
            verdict.checks.append(verdict.fatal)
        for compose_service in rule.compose_services:
            if compose_service not in judged:
                judged[compose_service] = _judge_containers(
                    client, compose_service, by_service.get(compose_service, []),
                    expected.get(compose_service), baseline)
            j = judged[compose_service]
            check = Check("compose" if compose_service in rule.named else "containers",
                          j.state == "ok", j.message, evidence=list(j.evidence))
            verdict.checks.append(check)
            if j.state == "fatal" and verdict.fatal is None:
                verdict.fatal = check
            verdict.ready = verdict.ready and j.state == "ok"
        if verdict.fatal is not None:
            verdict.ready = False
        elif verdict.ready:
            for probe in rule.probes:
                ok, message = probe_check(probe, http_timeout)
                verdict.checks.append(Check(probe.kind, ok, message))
                verdict.ready = verdict.ready and ok
        out.append(verdict)
    return out


def wait_healthy(client: Any, project: str, expected: Mapping[str, ExpectedImage],
                 rules: Sequence[ServiceRules], *, deadline: float, samples: int,
                 http_timeout: float, progress: Callable[[str], None] | None = None,
                 interval: float = SAMPLE_INTERVAL, target: str = "vm") -> TargetVerdict:
    """Look until `samples` consecutive all-ready looks, a fatal look, or the deadline."""
    started = time.monotonic()
    baseline: dict[str, int] = {}
    in_row: dict[str, int] = {r.name: 0 for r in rules}
    all_in_row = 0
    while True:
        verdicts = look_once(client, project, expected, rules, baseline, http_timeout)
        for v in verdicts:
            in_row[v.name] = in_row[v.name] + 1 if v.ready else 0
            v.in_row = in_row[v.name]
        all_in_row = all_in_row + 1 if all(v.ready for v in verdicts) else 0
        if progress:
            progress(f"healthy samples {all_in_row}/{samples}")
        fatal = any(v.fatal is not None for v in verdicts)
        done = all_in_row >= samples
        if fatal or done or time.monotonic() + interval > deadline:
            return _conclude(verdicts, samples, done, target, time.monotonic() - started)
        time.sleep(interval)


def _conclude(verdicts: list[ServiceVerdict], samples: int, done: bool, target: str,
              elapsed: float) -> TargetVerdict:
    stopped_by = next((v for v in verdicts if v.fatal is not None), None)
    for v in verdicts:
        v.healthy = done or (v.fatal is None and v.in_row >= samples)
        if v.fatal is not None:
            v.reason = v.fatal.message
        elif not v.healthy:
            pending = next((c for c in v.checks if not c.ok), None)
            if stopped_by is not None:
                v.stopped_by = stopped_by.name
                v.reason = (f"not confirmed healthy ({v.in_row}/{samples} samples) when "
                            f"{stopped_by.name} failed: {stopped_by.reason}")
            elif pending is not None:
                v.reason = f"not healthy before the deadline: {pending.message}"
            else:
                v.reason = f"only {v.in_row}/{samples} consecutive healthy samples before the deadline"
    failing = stopped_by or next((v for v in verdicts if not v.healthy), None)
    checks = [Check(f"{v.name}: {c.name}", c.ok, c.message, c.evidence) for v in verdicts for c in v.checks]
    report = HealthReport(target=target, healthy=failing is None, checks=checks, elapsed=elapsed,
                          reason="" if failing is None else f"{failing.name}: {failing.reason}",
                          details={"samples": samples} if failing is None else {})
    return TargetVerdict(report, verdicts)
