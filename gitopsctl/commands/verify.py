"""gitopsctl verify: the health checks alone, against what git says is live.

Each selected target is asked to converge on the remote branch tip (a Flux reconcile
request, a VM sync: both idempotent) and then judged with the same checks stage uses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from gitopsctl import repo as gitrepo
from gitopsctl.deploys import read_state
from gitopsctl.deploys_git import remote_ref
from gitopsctl.errors import EXIT_FINDINGS, EXIT_OK, UsageError
from gitopsctl.health import HealthReport


@dataclass
class VerifyResult:
    revision: str
    reports: list[HealthReport] = field(default_factory=list)
    live: dict[str, dict] = field(default_factory=dict)
    exit_code: int = EXIT_OK

    def to_dict(self) -> dict:
        return {"revision": self.revision, "healthy": all(r.healthy for r in self.reports),
                "targets": [{**r.to_dict(), "live": self.live.get(r.target)} for r in self.reports]}

    def render_text(self, console: Any) -> None:
        for report in self.reports:
            live = self.live.get(report.target) or {}
            state = "healthy" if report.healthy else f"UNHEALTHY: {report.reason}"
            console.print(f"{report.target:<9} {state}  (source {str(live.get('source') or '-')[:7]}, "
                          f"{report.elapsed:.1f}s)", markup=False)
            for check in report.checks:
                mark = "ok " if check.ok else "BAD"
                console.print(f"  {mark} {check.name}: {check.message}", markup=False)
                if not check.ok:
                    for line in check.evidence[-10:]:
                        console.print(f"      {line}", markup=False)


def verify(ctx, *, targets: list[str] | None = None, timeout: float | None = None) -> VerifyResult:
    from gitopsctl.commands.rollback import apply_and_wait
    from gitopsctl.targets.factory import target_for

    config = ctx.config
    root = ctx.repo
    gitrepo.fetch(root, config.git.remote, config.git.branch)
    state = read_state(root, remote_ref(config))
    services = [s for s in config.stage.order
                if not targets or config.service(s).target in targets]
    if not services:
        raise UsageError(f"no service runs on target(s) {', '.join(targets or [])}",
                         hint="targets are kubernetes and vm; see services.*.target in gitopsctl.yaml")
    timeout = config.timeouts.failure if timeout is None else timeout
    result = VerifyResult(revision=state.tip)
    for service in services:
        live = state.live(service)
        result.live[service] = live.to_dict() if live else None
        target = target_for(config, service, environ=ctx.environ, progress=ctx.reporter.debug,
                            reporter=ctx.reporter, repo_path=ctx.repo)
        ctx.reporter.waiting(f"{service}: verifying {state.tip[:7]} (deadline {timeout:.0f}s)")
        report = apply_and_wait(target, service, state.tip, time.monotonic() + timeout)
        report.target = service
        result.reports.append(report)
        (ctx.reporter.success if report.healthy else ctx.reporter.failure)(
            f"{service}: {'healthy' if report.healthy else report.reason}")
    result.exit_code = EXIT_OK if all(r.healthy for r in result.reports) else EXIT_FINDINGS
    return result
