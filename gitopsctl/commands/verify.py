"""gitopsctl verify: the health checks alone, against what git says is live. Read-only.

Nothing is written anywhere: no reconcile request to Flux, no sync on the VM, no commit.
Each selected target is observed until it is healthy at the revision of the remote
branch tip, or the deadline passes:

  kubernetes  GitRepository and Kustomization Ready at the tip (or at a commit whose
              service files are the same), Deployment rollout complete, pods without
              problems, the health URL answering 2xx
  vm          `gitopsctl sync --check` over SSH (container state and health, and the
              revision the checkout stands on), then the health URL from here
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from gitopsctl import repo as gitrepo
from gitopsctl.deploys import read_state
from gitopsctl.deploys_git import remote_ref
from gitopsctl.errors import EXIT_FINDINGS, EXIT_OK, GitopsctlError, UsageError
from gitopsctl.health import Check, HealthReport


@dataclass
class VerifyResult:
    revision: str
    reports: list[HealthReport] = field(default_factory=list)
    live: dict[str, dict] = field(default_factory=dict)
    exit_code: int = EXIT_OK

    def to_dict(self) -> dict:
        return {"revision": self.revision, "healthy": all(r.healthy for r in self.reports),
                "changed": False,
                "targets": [{**r.to_dict(), "live": self.live.get(r.target)} for r in self.reports]}

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


def verify(ctx, *, targets: list[str] | None = None, timeout: float | None = None) -> VerifyResult:
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
        ctx.reporter.waiting(f"{service}: observing {state.tip[:7]} (read-only, deadline {timeout:.0f}s)")
        mismatch = _mismatch(root, config, service, state.tip)
        report = _observe(lambda: target_for(config, service, environ=ctx.environ,
                                             progress=ctx.reporter.debug, reporter=ctx.reporter),
                          service, time.monotonic() + timeout, mismatch)
        report.target = service
        result.reports.append(report)
        (ctx.reporter.success if report.healthy else ctx.reporter.failure)(
            f"{service}: {'healthy' if report.healthy else report.reason}")
    result.exit_code = EXIT_OK if all(r.healthy for r in result.reports) else EXIT_FINDINGS
    return result


def _observe(make_target: Callable[[], Any], service: str, deadline: float,
             mismatch: Callable[[str], str | None]) -> HealthReport:
    """target.observe(); trouble reaching a target is an unhealthy report, never a crash."""
    started = time.monotonic()
    try:
        return make_target().observe(deadline, mismatch)
    except GitopsctlError as exc:
        return HealthReport(target=service, healthy=False, reason=f"{service}: {exc.message}",
                            checks=[Check("observe", False, exc.message, [exc.hint] if exc.hint else [])],
                            elapsed=time.monotonic() - started)


def watched_paths(config, service: str) -> list[str]:
    """The files whose content decides what a service runs."""
    paths = list(config.service(service).paths)
    vm = config.targets.vm
    if config.service(service).target == "vm" and vm is not None:
        paths += [vm.compose_file, *vm.sealed_secrets]
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
