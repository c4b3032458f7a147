"""A stage group's services are waited for at the same time, by one deadline, with the old verdicts.

Real git remote (a bare repository), in-memory targets whose waits take known times and
record when they ran: the group's waits must overlap, a failure with its own evidence
must stop the others at once (not at their deadline), the bystander rule must blame the
service with the evidence whatever order the verdicts come in, and a target that never
answers must not hold the stage past its deadline.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from gitopsctl.deploy.converge import LATE_GRACE, STOP_GRACE
from gitopsctl.deploy.stage import stage
from gitopsctl.errors import EXIT_OK, EXIT_ROLLED_BACK, ExternalError
from gitopsctl.health import HealthReport
from gitopsctl.targets import stop_requested

from .conftest import verdict

ONE_VM = ({"api": "box", "worker": "box"}, {"box": "vm"})
THREE = ({"web": "cluster", "api": "box", "worker": "box"}, {"cluster": "kubernetes", "box": "vm"})


@dataclass
class Window:
    kind: str            # apply | wait
    name: str            # the target (apply) or the service (wait)
    revision: str
    start: float
    end: float = 0.0
    outcome: str = ""


@dataclass
class TimedTarget:
    """One service: its first wait follows `plan` (what, after how long); later ones are healthy."""

    service: str
    target: str
    owner: "TimedTargets"
    plan: tuple = ("healthy", 0.0)
    waited: int = 0

    @property
    def name(self) -> str:
        return self.service

    def apply(self, revision: str, deadline: float) -> None:
        window = self.owner.opened("apply", self.target, revision)
        try:
            time.sleep(self.owner.apply_seconds.get(self.target, 0.0))
            if self.target in self.owner.apply_fails:
                raise ExternalError(f"{self.target}: ssh: connection refused")
        finally:
            window.end = time.monotonic()

    def wait_healthy(self, revision: str, deadline: float) -> HealthReport:
        window = self.owner.opened("wait", self.service, revision)
        self.waited += 1
        kind, seconds = self.plan if self.waited == 1 else ("healthy", 0.0)
        try:
            if kind == "until-stopped":  # a rollout that never completes, polled as real targets do
                while time.monotonic() < deadline:
                    if stop_requested():
                        window.outcome = "stopped"
                        return HealthReport(target=self.service, healthy=False, reason="stopped",
                                            details={"stopped": True})
                    time.sleep(0.02)
                window.outcome = "timeout"
                return verdict(self.service, "unhealthy")
            if kind == "deaf":  # ignores the stop and its deadline alike
                self.owner.release.wait(seconds)
                window.outcome = "deaf"
                return verdict(self.service, "healthy")
            time.sleep(seconds)
            window.outcome = kind
            return verdict(self.service, kind)
        finally:
            window.end = time.monotonic()

    def check_health(self) -> HealthReport:
        return verdict(self.service, "healthy")

    def observe(self, deadline: float, mismatch=None) -> HealthReport:
        return verdict(self.service, "healthy")


class TimedTargets:
    """A TargetSet over a homelab's bindings; `windows` records every apply and wait."""

    def __init__(self, lab, plans: dict[str, tuple] | None = None, *,
                 apply_seconds: dict[str, float] | None = None, apply_fails: set[str] = frozenset()):
        self.lab = lab
        self.windows: list[Window] = []
        self.apply_seconds = dict(apply_seconds or {})
        self.apply_fails = set(apply_fails)
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._targets = {s: TimedTarget(s, t, self, (plans or {}).get(s, ("healthy", 0.0)))
                         for s, t in lab.services.items()}

    def opened(self, kind: str, name: str, revision: str) -> Window:
        window = Window(kind, name, revision, time.monotonic())
        with self._lock:
            self.windows.append(window)
        return window

    def target_name(self, service: str) -> str:
        return self.lab.services[service]

    def for_service(self, service: str) -> TimedTarget:
        return self._targets[service]

    def prepare(self, connect: bool = True) -> None:
        pass

    def at(self, revision: str, kind: str) -> dict[str, Window]:
        return {w.name: w for w in self.windows if w.kind == kind and w.revision == revision}


def run(lab, targets, source, **kw):
    kw.setdefault("delay", 0)
    return stage(lab.context(), targets, source=source, allow_unbuilt=True, **kw)


def trailer(commit, key):
    return next(t.split(": ", 1)[1] for t in commit["trailers"] if t.startswith(key + ": "))


def steps_of(result):
    return {s.name: s for s in result.steps}


def test_a_groups_waits_overlap_and_each_target_is_applied_once_before_its_services(lab_factory):
    lab = lab_factory(*THREE, [["web", "api", "worker"]])
    source = lab.app_commit("v2")
    targets = TimedTargets(lab, {"web": ("healthy", 0.4), "api": ("healthy", 0.4),
                                 "worker": ("healthy", 0.4)}, apply_seconds={"box": 0.1})

    started = time.monotonic()
    result = run(lab, targets, source, timeout=30)

    assert result.exit_code == EXIT_OK, result.to_dict()
    tip = lab.written(source)[-1]["sha"]
    waits, applies = targets.at(tip, "wait"), targets.at(tip, "apply")
    assert sorted(waits) == ["api", "web", "worker"]
    assert sorted(a.name for a in targets.windows if a.kind == "apply") == ["box", "cluster"]
    # every wait was running while every other was: the group costs its longest, not the sum
    assert max(w.start for w in waits.values()) < min(w.end for w in waits.values())
    for service, window in waits.items():
        assert applies[lab.services[service]].end <= window.start  # applied before waited
    group = sum(steps_of(result)[f"{s} healthy"].elapsed for s in waits) / 3
    assert group >= 0.4 and time.monotonic() - started < 3 * 0.4 + 0.1 + 5


def test_each_group_of_the_order_waits_for_the_one_before_it(lab_factory):
    lab = lab_factory(*THREE, [["web"], ["api", "worker"]])
    source = lab.app_commit("v2")
    targets = TimedTargets(lab, {"web": ("healthy", 0.2), "api": ("healthy", 0.2)})

    assert run(lab, targets, source).exit_code == EXIT_OK
    web, _, tip = (c["sha"] for c in lab.written(source))
    assert targets.at(web, "wait")["web"].end <= targets.at(tip, "apply")["box"].start


def test_a_failure_with_its_own_evidence_stops_the_groups_other_waits_at_once(lab_factory):
    lab = lab_factory(*THREE, [["web", "api", "worker"]])
    source = lab.app_commit("v2")
    targets = TimedTargets(lab, {"web": ("until-stopped", 0), "api": ("crashloop", 0.2),
                                 "worker": ("until-stopped", 0)})

    result = run(lab, targets, source, timeout=60)

    assert (result.exit_code, result.outcome) == (EXIT_ROLLED_BACK, "rolled-back"), result.to_dict()
    tip = lab.written(source)[2]["sha"]
    waits = targets.at(tip, "wait")
    assert (waits["web"].outcome, waits["worker"].outcome) == ("stopped", "stopped")
    assert max(waits["web"].end, waits["worker"].end) - waits["api"].end < STOP_GRACE
    revert = lab.written(source)[-1]
    assert trailer(revert, "Reason").startswith("api pod api-7d9c CrashLoopBackOff")
    assert "also unhealthy" not in trailer(revert, "Evidence")  # a stopped wait is no evidence
    steps = steps_of(result)
    assert [steps[f"{s} healthy"].status for s in ("web", "api", "worker")] == \
        ["skipped", "failed", "skipped"]
    assert result.rollback.verified


def test_a_wait_that_ignores_the_stop_is_left_behind_after_the_grace(lab_factory):
    lab = lab_factory(*THREE, [["web", "api"], ["worker"]])
    source = lab.app_commit("v2")
    targets = TimedTargets(lab, {"web": ("deaf", 20), "api": ("unhealthy", 0.1)})
    try:
        started = time.monotonic()
        result = run(lab, targets, source, timeout=60)
        took = time.monotonic() - started
    finally:
        targets.release.set()

    assert result.exit_code == EXIT_ROLLED_BACK, result.to_dict()
    assert took < 0.1 + STOP_GRACE + 5  # not the 60 s deadline, nor web's 20 s
    assert steps_of(result)["web healthy"].status == "skipped"
    assert trailer(lab.written(source)[-1], "Reason") == "api HTTP health: 503"


def test_the_service_with_evidence_is_blamed_when_its_bystander_answers_first(lab_factory):
    lab = lab_factory(*ONE_VM, [["api", "worker"]])
    source = lab.app_commit("v2")
    targets = TimedTargets(lab, {"api": ("bystander", 0.0), "worker": ("crashloop", 0.3)})

    result = run(lab, targets, source, timeout=30)

    assert result.exit_code == EXIT_ROLLED_BACK
    revert = lab.written(source)[-1]
    assert revert["subject"].startswith(f"rollback: {source[:7]} — worker pod worker-7d9c CrashLoopBackOff")
    assert "also unhealthy: api: not confirmed healthy" in trailer(revert, "Evidence")
    assert [(s.name, s.status) for s in result.steps if s.name.endswith(" healthy")] == [
        ("api healthy", "failed"), ("worker healthy", "failed")]


def test_the_service_with_evidence_is_blamed_when_its_bystander_answers_last(lab_factory):
    lab = lab_factory(*ONE_VM, [["api", "worker"]])
    source = lab.app_commit("v2")
    targets = TimedTargets(lab, {"api": ("bystander", 0.3), "worker": ("crashloop", 0.0)})

    result = run(lab, targets, source, timeout=30)

    assert result.exit_code == EXIT_ROLLED_BACK
    revert = lab.written(source)[-1]
    assert trailer(revert, "Reason").startswith("worker pod worker-7d9c CrashLoopBackOff")
    # it answered within the grace the stop gives, so its verdict is part of the record
    assert "also unhealthy: api: not confirmed healthy" in trailer(revert, "Evidence")


def test_only_bystanders_blame_the_first_of_the_group(lab_factory):
    lab = lab_factory(*ONE_VM, [["api", "worker"]])
    source = lab.app_commit("v2")
    targets = TimedTargets(lab, {"api": ("bystander", 0.2), "worker": ("bystander", 0.0)})

    result = run(lab, targets, source, timeout=30)

    assert result.exit_code == EXIT_ROLLED_BACK
    assert trailer(lab.written(source)[-1], "Reason") == \
        "api: not confirmed healthy when another service failed"


def test_a_shared_target_that_cannot_be_applied_is_tried_once_and_blamed_on_its_first_service(lab_factory):
    lab = lab_factory(*ONE_VM, [["api", "worker"]])
    source = lab.app_commit("v2")
    targets = TimedTargets(lab, apply_fails={"box"})

    result = run(lab, targets, source, timeout=30)

    tip = lab.written(source)[1]["sha"]
    assert [w.name for w in targets.windows if w.kind == "apply" and w.revision == tip] == ["box"]
    assert targets.at(tip, "wait") == {}  # nothing to wait for on a target never applied
    revert = lab.written(source)[-1]
    assert "ssh: connection refused" in trailer(revert, "Reason")
    assert trailer(revert, "Gitopsctl-Failed-Check") == "deploy"
    assert "also unhealthy: worker: not waited for: applying target box failed" \
        in trailer(revert, "Evidence")
    assert result.exit_code != EXIT_OK


def test_a_target_that_never_answers_fails_at_the_deadline_not_later(lab_factory):
    lab = lab_factory(*THREE, [["web", "api", "worker"]])
    source = lab.app_commit("v2")
    targets = TimedTargets(lab, {"worker": ("deaf", 30)})
    try:
        started = time.monotonic()
        result = run(lab, targets, source, timeout=1.0)
        took = time.monotonic() - started
    finally:
        targets.release.set()

    assert result.exit_code == EXIT_ROLLED_BACK, result.to_dict()
    assert took < 1.0 + LATE_GRACE + 5
    revert = lab.written(source)[-1]
    assert trailer(revert, "Gitopsctl-Failed-Check") == "deadline"
    assert trailer(revert, "Reason").startswith("worker: no verdict from its target")
    steps = steps_of(result)
    assert (steps["web healthy"].status, steps["api healthy"].status) == ("ok", "ok")
