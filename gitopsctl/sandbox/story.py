"""The demo's four pipelines, and how each is judged.

A scenario is a developer commit followed by `gitopsctl build` and `gitopsctl stage`
for it, run as CI runs them. It passes only if the CLI's verdict, the git record
(deploy and rollback commits with their trailers) and what the services actually
answer on /version (and what the frontend answers on /api/version: the backend it reaches
through its route) all agree with what should have happened.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

from gitopsctl.sandbox.pipeline import CliRun, run_cli

DEPLOYED = "deployed"
ROLLED_BACK = "rolled-back"
_EXIT_FOR = {DEPLOYED: 0, ROLLED_BACK: 1}
# /version is read right after stage returns; the rollback has already verified health,
# so this only absorbs the moment between "healthy" and the old pod taking traffic.
SERVED_SETTLE_SECONDS = 30.0


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    commit_message: str
    files: Mapping[str, str]
    expected: str
    breaks: str | None = None     # the service this commit breaks
    caught_by: str | None = None  # what the rollback's reason must name


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("good-commit", "a good commit goes live, frontend then backend",
             "app: v2 of the frontend and the backend",
             {"examples/frontend/www/index.html": "<h1>homelab v2</h1>\n",
              "examples/backend/www/index.html": "backend v2\n"},
             DEPLOYED),
    Scenario("frontend-break", "a commit that crashes the frontend is rolled back before the backend moves",
             "frontend: crash at start",
             {"examples/frontend/fail-mode": "crash\n"},
             ROLLED_BACK, breaks="frontend"),
    # The previous commit left the frontend crashing in git; this one mends it, so the
    # only fault left is the backend's and the frontend must deploy, then be reverted.
    Scenario("backend-break", "a commit that breaks the backend health check is rolled back on both",
             "backend: fail the health check (frontend mended)",
             {"examples/frontend/fail-mode": "none\n",
              "examples/frontend/www/index.html": "<h1>homelab v3</h1>\n",
              "examples/backend/fail-mode": "unhealthy\n"},
             ROLLED_BACK, breaks="backend"),
    # Both halves pass their own health checks; only asking the frontend, through its
    # route, which backend it reaches shows that they cannot work together.
    Scenario("backend-incompatible",
             "a backend healthy on its own but unusable by the frontend is caught and rolled back on both",
             "backend: move the API to /v2 (health check mended)",
             {"examples/backend/fail-mode": "incompatible\n",
              "examples/frontend/www/index.html": "<h1>homelab v4</h1>\n"},
             ROLLED_BACK, breaks="backend", caught_by="frontend→backend"),
)


class Narrator(Protocol):
    """How a scenario tells its progress (the command backs this with its Reporter)."""

    def action(self, message: str) -> None: ...

    def success(self, message: str) -> None: ...

    def failure(self, message: str) -> None: ...

    def relay(self, line: str) -> None: ...


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass
class ScenarioOutcome:
    scenario: Scenario
    source: str = ""
    outcome: str = "not-run"
    commits: list[dict] = field(default_factory=list)
    timings: dict[str, float | None] = field(default_factory=dict)
    served_before: dict[str, str | None] = field(default_factory=dict)
    served_after: dict[str, str | None] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    reason: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.checks) and all(c.ok for c in self.checks)

    def to_dict(self) -> dict:
        return {"name": self.scenario.name, "title": self.scenario.title,
                "expected": self.scenario.expected, "outcome": self.outcome, "ok": self.ok,
                "source": self.source, "commits": self.commits, "timings": self.timings,
                "served_before": self.served_before, "served_after": self.served_after,
                "rollback_reason": self.reason, "checks": [c.to_dict() for c in self.checks],
                "error": self.error}


def play(lab: Any, scenario: Scenario, narrator: Narrator) -> ScenarioOutcome:
    """Commit, build, stage; then judge. Errors of the sandbox itself end up in .error."""
    from gitopsctl.errors import GitopsctlError

    result = ScenarioOutcome(scenario)
    result.served_before = served(lab)
    try:
        result.source = lab.commit_app_change(dict(scenario.files), scenario.commit_message)
        short = result.source[:7]
        narrator.action(f"developer pushes {short} \"{scenario.commit_message}\"")
        build = _cli(lab, narrator, "build", "--source", result.source)
        result.timings["build"] = build.seconds
        if build.returncode != 0:
            result.outcome = "build-failed"
            result.error = f"gitopsctl build failed: {build.last_error()}"
            return result
        stage = _cli(lab, narrator, "stage", "--source", result.source)
        result.timings.update(_stage_timings(stage))
        doc = stage.document or {}
        result.outcome = str(doc.get("outcome") or f"error (exit {stage.returncode})")
        result.commits = written_commits(lab, result.source)
        judge(lab, result, stage)
    except GitopsctlError as exc:
        result.error = exc.message
    except Exception as exc:  # the sandbox's own trouble (git, I/O): report it, go on
        result.error = f"{type(exc).__name__}: {exc}"
    return result


def _cli(lab: Any, narrator: Narrator, *args: str) -> CliRun:
    narrator.action(f"CI: gitopsctl {' '.join(a[:7] if len(a) == 40 else a for a in args)}")
    return run_cli(args, cwd=lab.ci, env=lab.ci_env(), relay=narrator.relay)


def _stage_timings(stage: CliRun) -> dict[str, float | None]:
    steps = {s.get("name"): s.get("elapsed_seconds") for s in (stage.document or {}).get("steps", [])}
    return {"stage": stage.seconds,
            "frontend_healthy": steps.get("frontend healthy"),
            "backend_healthy": steps.get("backend healthy"),
            "stage_delay": steps.get("stage delay"),
            "rollback": steps.get("rollback")}


def written_commits(lab: Any, source: str) -> list[dict]:
    """What gitopsctl pushed on top of the developer's commit, oldest first."""
    lines = lab.remote.log(ref=f"{source}..refs/heads/{lab.remote.branch}", fmt="%H%x1f%s")
    return [dict(zip(("commit", "subject"), line.split("\x1f", 1))) for line in reversed(lines)]


def served(lab: Any) -> dict[str, str | None]:
    """/version of each service, and the backend version the frontend reaches (/api/version)."""
    return {svc: lab.served_version(svc) for svc in ("frontend", "backend", "route")}


def judge(lab: Any, result: ScenarioOutcome, stage: CliRun) -> None:
    from gitopsctl import repo as gitrepo

    scenario, source = result.scenario, result.source
    add = result.checks.append
    expected_exit = _EXIT_FOR[scenario.expected]
    add(Check("stage verdict", stage.returncode == expected_exit and result.outcome == scenario.expected,
              f"exit {stage.returncode}, outcome {result.outcome}"))
    records = gitrepo.deploy_log(lab.remote.bare, f"refs/heads/{lab.remote.branch}")
    deploys = [r for r in records if r.kind == "deploy" and r.source == source]
    rollbacks = [r for r in records if r.kind == "rollback" and r.source == source]
    deployed_services = [r.service for r in reversed(deploys)]  # oldest first
    if scenario.expected == DEPLOYED:
        add(Check("git: frontend then backend deployed", deployed_services == ["frontend", "backend"],
                  f"deploy commits for {source[:7]}: {deployed_services}"))
        add(Check("git: no rollback", not rollbacks, f"{len(rollbacks)} rollback commit(s)"))
        want = {"frontend": source, "backend": source, "route": source}
    else:
        rollback = rollbacks[0] if rollbacks else None
        result.reason = rollback.reason if rollback else None
        add(Check("git: one rollback commit", len(rollbacks) == 1 and records[0].kind == "rollback",
                  f"{len(rollbacks)} rollback commit(s) for {source[:7]}"))
        reverted = set(rollback.reverts) if rollback else set()
        add(Check("git: rollback reverts every deploy of the commit",
                  bool(deploys) and all(_covers(reverted, d.commit) for d in deploys),
                  f"deploys {[d.commit[:7] for d in deploys]}, reverted {sorted(r[:7] for r in reverted)}"))
        if scenario.breaks == "frontend":
            add(Check("git: backend never touched", deployed_services == ["frontend"],
                      f"deploy commits for {source[:7]}: {deployed_services}"))
        else:
            add(Check("git: both services had been deployed", deployed_services == ["frontend", "backend"],
                      f"deploy commits for {source[:7]}: {deployed_services}"))
        add(Check("git: rollback names a reason", bool(result.reason), result.reason or "no Reason trailer"))
        if scenario.caught_by:
            add(Check(f"git: the rollback was caused by {scenario.caught_by}",
                      scenario.caught_by in (result.reason or ""), result.reason or "no Reason trailer"))
        want = dict(result.served_before)
    result.served_after = _settle(lab, want)
    add(Check("live: services answer the expected version", result.served_after == want,
              f"want {_short(want)}, serving {_short(result.served_after)}"))


def _covers(reverted: set[str], commit: str) -> bool:
    return any(commit.startswith(r) for r in reverted if len(r) >= 4)


def _settle(lab: Any, want: dict[str, str | None],
            clock: Callable[[], float] = time.monotonic) -> dict[str, str | None]:
    deadline = clock() + SERVED_SETTLE_SECONDS
    now = served(lab)
    while now != want and clock() < deadline:
        time.sleep(0.5)
        now = served(lab)
    return now


def _short(versions: Mapping[str, str | None]) -> str:
    return ", ".join(f"{k}={(v or 'none')[:7]}" for k, v in versions.items())
