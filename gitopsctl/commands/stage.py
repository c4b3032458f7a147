"""gitopsctl stage: frontend first, then backend; on any failure roll back both.

Resumable: every decision is taken from what git says (deploy and rollback commits
on the remote branch) and what the targets say, so running the same command again
after a kill or a cancelled CI job finishes the deploy or the rollback without
writing a second commit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from gitopsctl import repo as gitrepo
from gitopsctl.commands import rollback as rollback_cmd
from gitopsctl.deploys import ensure_not_superseded, read_state
from gitopsctl.deploys_git import align_with_remote, remote_ref
from gitopsctl.errors import EXIT_OK, EXIT_ROLLED_BACK, Superseded
from gitopsctl.health import HealthReport


@dataclass
class Step:
    name: str
    status: str = "running"     # ok | failed | resumed | skipped
    elapsed: float = 0.0
    detail: str = ""
    data: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "elapsed_seconds": round(self.elapsed, 3),
                "detail": self.detail, **({"data": self.data} if self.data else {})}


@dataclass
class StageResult:
    source: str
    outcome: str = "deploying"   # deployed | rolled-back | rollback-failed | superseded
    steps: list[Step] = field(default_factory=list)
    commits: list[str] = field(default_factory=list)
    rollback: Any = None
    elapsed: float = 0.0
    exit_code: int = EXIT_OK

    def to_dict(self) -> dict:
        return {"source": self.source, "outcome": self.outcome,
                "elapsed_seconds": round(self.elapsed, 3), "commits": self.commits,
                "steps": [s.to_dict() for s in self.steps],
                "rollback": self.rollback.to_dict() if self.rollback else None,
                "exit_code": self.exit_code}

    def render_text(self, console: Any) -> None:
        console.print(f"stage {self.source[:7]}: {self.outcome} in {self.elapsed:.1f}s", markup=False)
        for step in self.steps:
            console.print(f"  {step.status:<8} {step.name:<28} {step.elapsed:6.1f}s  {step.detail}",
                          markup=False)
        if self.rollback is not None:
            self.rollback.render_text(console)


class _Clock:
    """Times each step and appends it to the result, whatever way the step ends."""

    def __init__(self, result: StageResult):
        self.result = result

    def step(self, name: str) -> "_Timed":
        step = Step(name)
        self.result.steps.append(step)
        return _Timed(step)


class _Timed:
    def __init__(self, step: Step):
        self.step = step

    def __enter__(self) -> Step:
        self._start = time.monotonic()
        return self.step

    def __exit__(self, exc_type, exc, tb) -> None:
        self.step.elapsed = time.monotonic() - self._start
        if isinstance(exc, Superseded) and self.step.status == "running":
            self.step.status = "superseded"
            self.step.detail = exc.message
        elif exc is not None and self.step.status == "running":
            self.step.status = "failed"
            self.step.detail = getattr(exc, "message", str(exc))
        elif self.step.status == "running":
            self.step.status = "ok"


def stage(ctx, *, source: str | None = None, delay: float | None = None,
          timeout: float | None = None) -> StageResult:
    config = ctx.config
    root = ctx.repo
    rep = ctx.reporter
    t0 = time.monotonic()
    source = gitrepo.resolve_source(root, source)
    delay = config.stage.delay if delay is None else delay
    timeout = config.timeouts.failure if timeout is None else timeout
    result = StageResult(source=source)
    clock = _Clock(result)
    _prewarm(config)
    rep.action(f"stage {source[:7]}: {' → '.join(config.stage.order)}")

    with clock.step("sync with remote") as step:
        tip = align_with_remote(root, config, rep.debug)
        step.detail = f"{config.git.remote}/{config.git.branch} at {tip[:7]}"
    state = read_state(root, remote_ref(config))

    previous = state.rollback_of(source)
    if previous is not None:
        # A rollback of this source is already in git: the deploy is over. Finish the
        # rollback (a kill may have stopped it before verification) rather than redeploy.
        rep.warning(f"{source[:7]} was already rolled back by {previous.commit[:7]}; "
                    "finishing that rollback")
        return _finish(ctx, result, clock, t0, rollback_cmd.Failure(
            service="-", target="-", message=previous.reason or "earlier failure"))

    try:
        ensure_not_superseded(root, state, source, config.stage.order)
    except Superseded as exc:
        return _superseded(result, exc, t0, rep)

    order = list(config.stage.order)
    try:
        for index, service in enumerate(order):
            failure = _deploy_service(ctx, result, clock, service, source, timeout, t0)
            if failure is None and index < len(order) - 1 and delay > 0:
                failure = _soak(ctx, result, clock, service, delay)
            if failure is not None:
                return _finish(ctx, result, clock, t0, failure)
    except Superseded as exc:
        # A newer pipeline deployed while this one ran: it owns the deploy now.
        return _superseded(result, exc, t0, rep)

    with clock.step("resume image automation") as step:
        step.detail = _resume_automation(ctx, source) or "nothing suspended"
    result.outcome = "deployed"
    result.exit_code = EXIT_OK
    result.elapsed = time.monotonic() - t0
    rep.success(f"{source[:7]} is live and healthy on {', '.join(order)} "
                f"({result.elapsed:.1f}s)")
    return result


def _deploy_service(ctx, result: StageResult, clock: _Clock, service: str, source: str,
                    timeout: float, t0: float) -> rollback_cmd.Failure | None:
    from gitopsctl.commands.bump import bump
    from gitopsctl.targets.factory import target_for

    config = ctx.config
    root = ctx.repo
    rep = ctx.reporter
    with clock.step(f"bump {service}") as step:
        state = read_state(root, remote_ref(config))
        existing = next((r for r in state.live_of_source(source) if r.service == service), None)
        if existing is not None:
            step.status = "resumed"
            step.detail = f"deploy commit {existing.commit[:7]} already pushed"
            result.commits.append(existing.commit)
        else:
            # Any service counts: once a newer source is live anywhere, this one stops.
            ensure_not_superseded(root, state, source, config.stage.order)
            outcome = bump(ctx, services=[service], source=source, commit=True, push=True)
            commits = [b.commit for b in outcome.bumps if b.commit]
            result.commits.extend(commits)
            step.detail = (f"commit {commits[0][:7]} pushed" if commits
                           else "no change: the image was already in git")
    revision = gitrepo.resolve_commit(root, remote_ref(config))
    target = target_for(config, service, environ=ctx.environ, progress=rep.debug, reporter=rep,
                        repo_path=root)
    with clock.step(f"{service} healthy") as step:
        rep.waiting(f"{service}: waiting for {revision[:7]} to be live and healthy "
                    f"(deadline {timeout:.0f}s)")
        deadline = time.monotonic() + timeout
        report = rollback_cmd.apply_and_wait(target, service, revision, deadline)
        step.data = report.to_dict()
        if report.healthy:
            rep.success(f"{service} healthy, {time.monotonic() - t0:.1f}s into the stage")
            step.detail = "healthy"
            return None
        step.status = "failed"
        step.detail = report.reason
        step.elapsed = report.elapsed
        rep.failure(f"{service}: {report.reason}")
        return _failure(service, config, report, result)


def _soak(ctx, result: StageResult, clock: _Clock, service: str,
          delay: float) -> rollback_cmd.Failure | None:
    rep = ctx.reporter
    with clock.step("stage delay") as step:
        end = time.monotonic() + delay
        with rep.status(f"stage delay: {delay:.0f}s before the next service") as status:
            while (left := end - time.monotonic()) > 0:
                status.update(f"stage delay: {left:.0f}s left")
                time.sleep(min(1.0, left))
        step.detail = f"{delay:.0f}s"
    with clock.step(f"{service} still healthy") as step:
        report = rollback_cmd.check_once(ctx, service)
        step.data = report.to_dict()
        if report.healthy:
            step.detail = "healthy"
            return None
        step.status = "failed"
        step.detail = report.reason
        rep.failure(f"{service} became unhealthy during the stage delay: {report.reason}")
        failure = _failure(service, ctx.config, report, result)
        failure.message = f"unhealthy after the stage delay: {report.reason}"
        return failure


def _failure(service: str, config, report: HealthReport, result: StageResult) -> rollback_cmd.Failure:
    timings = {s.name: s.elapsed for s in result.steps if s.status in ("ok", "resumed", "failed")}
    return rollback_cmd.Failure(service=service, target=config.service(service).target,
                                report=report, timings=timings)


def _superseded(result: StageResult, exc: Superseded, t0: float, rep) -> StageResult:
    result.outcome = "superseded"
    result.exit_code = exc.exit_code
    result.steps.append(Step("superseded check", "skipped", 0.0, exc.message))
    result.elapsed = time.monotonic() - t0
    rep.warning(exc.message)
    return result


def _finish(ctx, result: StageResult, clock: _Clock, t0: float,
            failure: rollback_cmd.Failure) -> StageResult:
    with clock.step("rollback") as step:
        try:
            outcome = rollback_cmd.perform(ctx, source=result.source, failure=failure, started=t0)
        except Superseded as exc:
            step.status = "skipped"
            return _superseded(result, exc, t0, ctx.reporter)
        result.rollback = outcome
        step.detail = (f"revert {outcome.commit[:7]}" if outcome.commit else "nothing to revert")
        if outcome.verified is False:
            step.status = "failed"
    result.exit_code = outcome.exit_code if outcome.exit_code else EXIT_ROLLED_BACK
    result.outcome = "rolled-back" if result.exit_code == EXIT_ROLLED_BACK else "rollback-failed"
    result.elapsed = time.monotonic() - t0
    return result


def _resume_automation(ctx, source: str) -> str | None:
    kube = ctx.config.targets.kubernetes
    ref = kube.image_update_automation if kube else None
    if ref is None:
        return None
    from gitopsctl import automation

    config = ctx.config
    found = automation.find(ctx.repo / "clusters", ref.name, ref.namespace)
    if found is None or not found.suspended:
        return None
    automation.set_suspended(found, False)
    path = str(found.path.relative_to(ctx.repo))
    message = gitrepo.format_message(
        f"chore: resume image automation after deploy of {source[:7]} {config.git.skip_marker}",
        [("Gitopsctl-Resume-Automation", f"{ref.namespace}/{ref.name}")])
    commit = gitrepo.commit_paths(ctx.repo, [path], message,
                                  gitrepo.Author(config.git.author.name, config.git.author.email))
    if commit:
        gitrepo.push_with_retry(ctx.repo, config.git.remote, config.git.branch,
                                retries=config.git.push_retries, progress=ctx.reporter.waiting)
    return f"resumed {ref.namespace}/{ref.name} in {commit[:7] if commit else 'git'}"


def _prewarm(config) -> None:
    """Import the target clients while git work runs: loading the kubernetes client takes
    1-2 s, which would otherwise sit between pushing the deploy commit and asking Flux."""
    import threading

    def load() -> None:
        try:
            if config.targets.kubernetes is not None:
                import kubernetes.client  # noqa: F401
                import kubernetes.config  # noqa: F401
            if config.targets.vm is not None:
                import fabric  # noqa: F401
        except ImportError:
            pass  # the real import, later, reports it properly

    threading.Thread(target=load, name="gitopsctl-prewarm", daemon=True).start()
