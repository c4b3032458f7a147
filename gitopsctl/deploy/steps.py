"""A stage's record: its steps, each timed, and the result the CLI renders."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from gitopsctl.deploy.plan import ServicePlan
from gitopsctl.errors import EXIT_OK, Superseded


@dataclass
class Step:
    name: str
    status: str = "running"     # ok | failed | resumed | skipped | superseded
    elapsed: float = 0.0
    detail: str = ""
    data: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "elapsed_seconds": round(self.elapsed, 3),
                "detail": self.detail, **({"data": self.data} if self.data else {})}


@dataclass
class StageResult:
    source: str
    outcome: str = "deploying"   # deployed | rolled-back | rollback-failed | superseded | failed
    steps: list[Step] = field(default_factory=list)
    commits: list[str] = field(default_factory=list)
    plan: list[ServicePlan] = field(default_factory=list)
    rollback: Any = None
    error: dict | None = None
    elapsed: float = 0.0
    exit_code: int = EXIT_OK
    service: str = "-"           # the service being deployed when something failed

    def to_dict(self) -> dict:
        return {"source": self.source, "outcome": self.outcome,
                "elapsed_seconds": round(self.elapsed, 3), "commits": self.commits,
                "plan": [p.to_dict() for p in self.plan],
                "steps": [s.to_dict() for s in self.steps],
                "rollback": self.rollback.to_dict() if self.rollback else None,
                "error": self.error, "exit_code": self.exit_code}

    def render_text(self, console: Any) -> None:
        console.print(f"stage {self.source[:7]}: {self.outcome} in {self.elapsed:.1f}s", markup=False)
        for step in self.steps:
            console.print(f"  {step.status:<8} {step.name:<28} {step.elapsed:6.1f}s  {step.detail}",
                          markup=False)
        if self.error:
            console.print(f"  error: {self.error.get('message')}", markup=False)
            if self.error.get("hint"):
                console.print(f"  hint: {self.error['hint']}", markup=False)
        if self.rollback is not None:
            self.rollback.render_text(console)

    def timings(self) -> dict[str, float]:
        """How long each step that ran took, for the rollback commit's record."""
        return {s.name: s.elapsed for s in self.steps if s.status in ("ok", "resumed", "failed")}


class Timed:
    """Times one step and records how it ended, whatever way that is."""

    def __init__(self, result: StageResult, name: str):
        self.step = Step(name)
        result.steps.append(self.step)

    def __enter__(self) -> Step:
        self._start = time.monotonic()
        return self.step

    def __exit__(self, exc_type, exc, tb) -> None:
        self.step.elapsed = time.monotonic() - self._start
        if self.step.status != "running":
            return
        if isinstance(exc, Superseded):
            self.step.status, self.step.detail = "superseded", exc.message
        elif exc is not None:
            self.step.status = "failed"
            self.step.detail = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        else:
            self.step.status = "ok"


def record_verdict(step: Step, verdict: Any) -> None:
    """A service's wait step from its converge.Verdict: timed from the start of its
    group's wait, as the group's services are waited for together."""
    report = verdict.report
    step.data = report.to_dict()
    step.elapsed = verdict.elapsed
    if report.healthy:
        step.status, step.detail = "ok", "healthy"
    elif verdict.stopped:
        step.status, step.detail = "skipped", report.reason
    else:
        step.status, step.detail = "failed", report.reason
