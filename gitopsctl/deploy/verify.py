"""Verify: the health checks alone, against what git says is live. Read-only.

Nothing is written anywhere: no reconcile request to Flux, no sync on the VM, no commit.
Each service (of the selected targets) is observed until it is healthy at the revision
of the remote branch tip, or the deadline passes:

  kubernetes  GitRepository and Kustomizations Ready at the tip (or at a commit whose
              service files are the same), the service's workloads rolled out, pods
              without problems, its health checks passing
  vm          `gitopsctl sync --check` over SSH (the service's containers and their
              health, and the revision the checkout stands on), then its health checks
              from here

Then every consistency pair touching those services: the service asked must reach the
version of the other that git says is live (deploy/consistency.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from gitopsctl import repo as gitrepo
from gitopsctl.deploy.converge import observe
from gitopsctl.deploy.state import read_state
from gitopsctl.errors import EXIT_FINDINGS, EXIT_OK, GitopsctlError, UsageError
from gitopsctl.health import HealthReport


@dataclass
class VerifyResult:
    revision: str
    reports: list[HealthReport] = field(default_factory=list)
    live: dict[str, dict] = field(default_factory=dict)
    consistency: list = field(default_factory=list)  # consistency.PairReport
    exit_code: int = EXIT_OK

    def to_dict(self) -> dict:
        return {"revision": self.revision, "healthy": all(r.healthy for r in self.reports),
                "consistent": all(p.ok for p in self.consistency), "changed": False,
                "targets": [{**r.to_dict(), "live": self.live.get(r.target)} for r in self.reports],
                "consistency": [p.to_dict() for p in self.consistency]}

    def render_text(self, console: Any) -> None:
        console.print(f"git says live: {self.revision[:12]} (nothing was changed)", markup=False)
        for report in self.reports:
            live = self.live.get(report.target) or {}
            state = "healthy" if report.healthy else f"UNHEALTHY: {report.reason}"
            console.print(f"{report.target:<9} {state}  (source {str(live.get('source') or '-')[:7]}, "
                          f"runs {str(report.revision or '-')[:12]}, {report.elapsed:.1f}s)",
                          markup=False)
            for check in report.checks:
                mark = "ok " if check.ok else "BAD"
                console.print(f"  {mark} {check.name}: {check.message}", markup=False)
                if not check.ok:
                    for line in check.evidence[-10:]:
                        console.print(f"      {line}", markup=False)
        for pair in self.consistency:
            mark = "ok " if pair.ok else "BAD"
            console.print(f"{mark} consistency {pair.pair}: {pair.message}", markup=False)
            if not pair.ok:
                for line in pair.answers:
                    console.print(f"      {line}", markup=False)


def verify(ctx, targets: Any, *, services: Sequence[str] | None = None,
           on_targets: Sequence[str] | None = None, timeout: float | None = None) -> VerifyResult:
    """Observe, at the remote tip, every service named in `services` and running on a target
    named in `on_targets` (each: all, when not given)."""
    config = ctx.config
    root = ctx.repo
    for name in services or ():
        config.service(name)  # an unknown name is a config error naming the known ones
    for name in on_targets or ():
        config.target(name)
    gitrepo.fetch(root, config.git.remote, config.git.branch)
    state = read_state(root, gitrepo.remote_ref(config))
    chosen = [s for s in config.stage.order if (not services or s in services)
              and (not on_targets or targets.target_name(s) in on_targets)]
    if not chosen:
        raise UsageError(f"no service {', '.join(services or ['at all'])} runs on target(s) "
                         f"{', '.join(on_targets or [])}",
                         hint="services.*.target in gitopsctl.yaml binds each service to a target")
    timeout = config.timeouts.failure if timeout is None else timeout
    result = VerifyResult(revision=state.tip)
    for service in chosen:
        live = state.live(service)
        result.live[service] = live.to_dict() if live else None
        ctx.reporter.waiting(f"{service}: observing {state.tip[:7]} (read-only, deadline {timeout:.0f}s)")
        report = observe(targets, service, time.monotonic() + timeout,
                         _mismatch(root, config, service, state.tip))
        result.reports.append(report)
        (ctx.reporter.success if report.healthy else ctx.reporter.failure)(
            f"{service}: {'healthy' if report.healthy else report.reason}")
    result.consistency = _agree(ctx, state, chosen, all(r.healthy for r in result.reports))
    healthy = all(r.healthy for r in result.reports) and all(p.ok for p in result.consistency)
    result.exit_code = EXIT_OK if healthy else EXIT_FINDINGS
    return result


def _agree(ctx, state, chosen: Sequence[str], healthy: bool) -> list:
    """The pairs touching the chosen services, against the sources git says are live; one
    look when a service is unhealthy already (waiting would only delay the verdict)."""
    from gitopsctl.deploy import consistency

    reports = consistency.judge_live(ctx.config, state, consistency.pairs_touching(ctx.config, chosen),
                                     once=not healthy, progress=ctx.reporter.waiting)
    for report in reports:
        (ctx.reporter.success if report.ok else ctx.reporter.failure)(f"{report.pair}: {report.message}")
    return reports


def watched_paths(config, service: str) -> list[str]:
    """The files whose content decides what a service runs."""
    paths = list(config.service(service).paths)
    target = config.target_of(service)
    if target.kind == "vm":
        paths += [target.compose_file, *target.sealed_secrets]
    return sorted(set(paths))


def _mismatch(root, config, service: str, tip: str) -> Callable[[str], str | None]:
    """Why a revision a target runs is not what git says is live; None when it is.

    A target that stands on an older commit of the branch still runs what git says when
    none of the service's files changed since (the VM checkout after an app-only push).
    """
    branch = f"{config.git.remote}/{config.git.branch}"
    paths = watched_paths(config, service)

    def why_not(revision: str) -> str | None:
        if revision.startswith(tip[:len(revision)]) and len(revision) >= 7:
            return None
        try:
            sha = gitrepo.resolve_commit(root, revision)
        except GitopsctlError:
            return (f"runs {revision[:12]}, a commit this clone does not know "
                    f"({branch} is at {tip[:12]})")
        try:
            on_branch = gitrepo.is_ancestor(root, sha, tip)
        except GitopsctlError:
            on_branch = False
        if not on_branch:
            return f"runs {sha[:12]}, which is not on {branch} (at {tip[:12]})"
        if gitrepo.tree_files(root, sha, paths) != gitrepo.tree_files(root, tip, paths):
            return (f"runs {sha[:12]}, but {service}'s files changed on {branch} since "
                    f"(live: {tip[:12]})")
        return None

    return why_not
