"""Stage: service groups in order, each live and healthy before the next; on failure roll back all.

1. Plan every edit of every service from the remote tip (deploy/plan.py). A plan that
   cannot be made stops here: exit 2, nothing pushed, nothing live changed.
2. Per group (config stage.groups; one service each unless grouped): one deploy commit
   per service pushed back to back, so git keeps a record per service; then each
   distinct target of the group applied once at the tip, and every service of the group
   waited healthy, all at the same time and by one deadline (converge.wait_group); the
   first failure with its own evidence stops the others' waits. The stage delay and one
   more look only between groups.
3. Once anything of this source is on the remote, every later failure (a push refused,
   a broken file, a target, health, a bug) ends in the rollback of all of it, every
   group, in one revert commit.
4. Once every group is healthy, each consistency pair (deploy/consistency.py): the service
   asked must reach the other at this source, or everything is rolled back as in 3.

Resumable: decisions come from git (deploy and rollback commits on the remote branch)
and from the targets, so running the same command again after a kill finishes the
deploy or the rollback without writing a second commit.

Targets come in as a TargetSet (gitopsctl.targets); nothing here builds one.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from gitopsctl import failpoints
from gitopsctl import repo as gitrepo
from gitopsctl.deploy.converge import Verdict, check_once, wait_group
from gitopsctl.deploy.plan import ServicePlan, plan_service, plan_stage
from gitopsctl.deploy.rollback import Failure, perform
from gitopsctl.deploy.state import (DeployState, commit_author, deploy_message,
                                    ensure_not_superseded, read_state)
from gitopsctl.deploy.steps import StageResult, Step, Timed, record_verdict
from gitopsctl.deploy.suspension import ensure_not_suspended
from gitopsctl.errors import (EXIT_HUMAN_NEEDED, EXIT_INTERNAL, EXIT_OK, EXIT_ROLLED_BACK, GitopsctlError,
                              Superseded, Suspended)
from gitopsctl.health import HealthReport

__all__ = ["StageResult", "Step", "stage"]


def stage(ctx, targets: Any, *, source: str | None = None, delay: float | None = None,
          timeout: float | None = None, allow_unbuilt: bool = False) -> StageResult:
    """Deploy `source` group by group onto `targets` (a TargetSet); roll back all on failure."""
    t0 = time.monotonic()
    result = StageResult(source=source or "HEAD")
    seen: list[DeployState] = []  # the one deploy state of this run, followed as the tip moves
    try:
        return _stage(ctx, targets, result, source, delay, timeout, allow_unbuilt, t0, seen)
    except Superseded as exc:
        # A newer pipeline deployed while this one ran: it owns the deploy now.
        return _superseded(result, exc, t0, ctx.reporter)
    except Suspended as exc:
        return _suspended(result, exc, t0, ctx.reporter)
    except Exception as exc:  # noqa: BLE001 - any failure after a push must still roll back
        if not result.commits:
            return _failed_before_push(ctx, result, exc, t0)
        return _finish(ctx, targets, result, t0, _failure_from(ctx, result, exc), seen)


def _stage(ctx, targets, result: StageResult, source: str | None, delay: float | None,
           timeout: float | None, allow_unbuilt: bool, t0: float,
           seen: list[DeployState]) -> StageResult:
    config = ctx.config
    root = ctx.repo
    rep = ctx.reporter
    source = result.source = gitrepo.resolve_source(root, source)
    delay = config.stage.delay if delay is None else delay
    timeout = config.timeouts.failure if timeout is None else timeout
    groups = config.stage.groups
    order = config.stage.order
    rep.action(f"stage {source[:7]}: {' → '.join(' + '.join(g) for g in groups)}")

    with Timed(result, "sync with remote") as step:
        tip = gitrepo.fetch(root, config.git.remote, config.git.branch, meanwhile=targets.prepare)
        step.detail = f"{config.git.remote}/{config.git.branch} at {tip[:7]}"
    state = read_state(root, tip)
    seen[:] = [state]
    # Paused in git (`gitopsctl suspend`): stop before any push, this run's or an earlier's.
    ensure_not_suspended(root, tip, state)
    # What an earlier run of this source already pushed counts as pushed by this one.
    result.commits.extend(r.commit for r in reversed(state.live_of_source(source)))

    previous = state.rollback_of(source)
    if previous is not None:
        # A rollback of this source is already in git: the deploy is over. Finish the
        # rollback (a kill may have stopped it before verification) rather than redeploy.
        rep.warning(f"{source[:7]} was already rolled back by {previous.commit[:7]}; "
                    "finishing that rollback")
        return _finish(ctx, targets, result, t0, Failure(
            service="-", target="-", message=previous.reason or "earlier failure"), seen)
    ensure_not_superseded(root, state, source, order)

    with Timed(result, "plan") as step:
        result.plan = plan_stage(root, config, tip, source, order, environ=ctx.environ,
                                 allow_unbuilt=allow_unbuilt)
        step.detail = "; ".join(f"{p.service}: {len(p.changes)} edit(s) in {len(p.files)} file(s)"
                                for p in result.plan)
    plans = {p.service: p for p in result.plan}

    for index, group in enumerate(groups):
        failure = _deploy_group(ctx, targets, result, [plans[s] for s in group], source, timeout,
                                t0, seen)
        if failure is None and index < len(groups) - 1 and delay > 0:
            failure = _soak(ctx, targets, result, group, delay)
        if failure is not None:
            return _finish(ctx, targets, result, t0, failure, seen)
    result.service = "-"
    failure = _agree(ctx, result, source)
    if failure is not None:
        return _finish(ctx, targets, result, t0, failure, seen)

    with Timed(result, "resume image automation") as step:
        step.detail = _resume_automation(ctx, source) or "nothing suspended"
    result.outcome = "deployed"
    result.exit_code = EXIT_OK
    result.elapsed = time.monotonic() - t0
    rep.success(f"{source[:7]} is live and healthy on {', '.join(order)} ({result.elapsed:.1f}s)")
    return result


def _deploy_group(ctx, targets, result: StageResult, plans: Sequence[ServicePlan], source: str,
                  timeout: float, t0: float, seen: list[DeployState]) -> Failure | None:
    """Push the group's deploy commits, then apply its targets once at the tip and wait
    for all its services at the same time."""
    config = ctx.config
    root = ctx.repo
    rep = ctx.reporter
    for plan in plans:
        result.service = plan.service
        _push_deploy(ctx, result, plan, source, seen)
    gitrepo.follow_remote(root, config.git.remote, config.git.branch)
    revision = gitrepo.resolve_commit(root, gitrepo.remote_ref(config))
    services = [plan.service for plan in plans]
    result.service = services[0]
    deadline = time.monotonic() + timeout  # one failure timeout for the whole group
    steps = {service: Step(f"{service} healthy") for service in services}
    result.steps.extend(steps.values())
    for service in services:
        rep.waiting(f"{service}: waiting for {revision[:7]} to be live and healthy "
                    f"(deadline in {max(0.0, deadline - time.monotonic()):.0f}s)")

    def said(verdict: Verdict) -> None:
        report = verdict.report
        if report.healthy:
            rep.success(f"{verdict.service} healthy, {time.monotonic() - t0:.1f}s into the stage")
        elif verdict.stopped:
            rep.warning(report.reason)
        else:
            rep.failure(f"{verdict.service}: {report.reason}")

    try:
        verdicts = wait_group(targets, services, revision, deadline, settles=_own_failure,
                              on_verdict=said)
    except BaseException:
        for step in steps.values():
            if step.status == "running":
                step.status, step.detail = "failed", "the wait broke off"
        raise
    for verdict in verdicts:
        record_verdict(steps[verdict.service], verdict)
    failed = [v for v in verdicts if not v.report.healthy and not v.stopped]
    blamed = next((v for v in failed if _own_failure(v.report)), None)
    if blamed is not None:
        # the first failure with its own evidence stopped the wait: it is the one blamed
        result.service = blamed.service
        failure = _failure(blamed.service, config, blamed.report, result)
        others = [v for v in sorted(failed, key=lambda v: services.index(v.service)) if v is not blamed]
        failure.message = "; ".join(f"also unhealthy: {v.report.reason}" for v in others)
        return failure
    bystanders = sorted(failed, key=lambda v: services.index(v.service))
    if bystanders:
        # A target shared by several services (one compose up for all) failed without
        # naming one of them: blame the first of the group, as its evidence is all there is.
        result.service = bystanders[0].service
        return _failure(bystanders[0].service, config, bystanders[0].report, result)
    return None


def _own_failure(report: HealthReport) -> bool:
    return not report.healthy and not report.details.get("stopped") and not _bystander(report)


def _bystander(report: HealthReport) -> bool:
    """Unhealthy only because a group-mate on the same target failed first: every check of
    its own passed, or its target says which service stopped the wait."""
    return report.failed_check is None or bool(report.details.get("stopped_by"))


def _push_deploy(ctx, result: StageResult, plan: ServicePlan, source: str,
                 seen: list[DeployState]) -> None:
    config = ctx.config
    root = ctx.repo
    rep = ctx.reporter
    service = plan.service
    with Timed(result, f"bump {service}") as step:
        outcome = {"resumed": None}

        def build(tip: str) -> str | None:
            # The run's state followed to this tip: only what was pushed since is read.
            state = seen[0] = seen[0].advance(tip)
            existing = next((r for r in state.live_of_source(source) if r.service == service), None)
            if existing is not None:
                outcome["resumed"] = existing.commit
                return None
            # Any service counts: once a newer source is live anywhere, this one stops.
            ensure_not_superseded(root, state, source, config.stage.order)
            edit = plan_service(root, config, tip, service, plan.image, plan.origin)
            if not edit.changed:
                return None
            return gitrepo.commit_files(root, tip, edit.encoded(),
                                        deploy_message(config, service, source, plan.image,
                                                       pause=state.suspension_trailer()),
                                        commit_author(config))

        pushed, attempts = gitrepo.push_built(root, config.git.remote, config.git.branch, build,
                                              retries=config.git.push_retries, progress=rep.waiting,
                                              label=service)
        if pushed is not None:
            result.commits.append(pushed)
            step.detail = f"commit {pushed[:7]} pushed" + (f" ({attempts} attempts)" if attempts > 1 else "")
            rep.success(f"pushed deploy({service}) {pushed[:7]}")
        elif outcome["resumed"]:
            step.status = "resumed"
            step.detail = f"deploy commit {outcome['resumed'][:7]} already pushed"
            if outcome["resumed"] not in result.commits:
                result.commits.append(outcome["resumed"])
        else:
            step.detail = "no change: the image was already in git"


def _soak(ctx, targets, result: StageResult, group: Sequence[str], delay: float) -> Failure | None:
    rep = ctx.reporter
    with Timed(result, "stage delay") as step:
        end = time.monotonic() + delay
        with rep.status(f"stage delay: {delay:.0f}s before the next group") as status:
            while (left := end - time.monotonic()) > 0:
                status.update(f"stage delay: {left:.0f}s left")
                time.sleep(min(1.0, left))
        step.detail = f"{delay:.0f}s"
    for service in group:
        with Timed(result, f"{service} still healthy") as step:
            report = check_once(targets, service)
            step.data = report.to_dict()
            if report.healthy:
                step.detail = "healthy"
                continue
            step.status = "failed"
            step.detail = report.reason
            rep.failure(f"{service} became unhealthy during the stage delay: {report.reason}")
            failure = _failure(service, ctx.config, report, result)
            failure.message = f"unhealthy after the stage delay: {report.reason}"
            return failure
    return None


def _agree(ctx, result: StageResult, source: str) -> Failure | None:
    """Every consistency pair, once all groups are healthy: each service asked must reach
    the version of the other that this stage just made live (the same source)."""
    from gitopsctl.deploy import consistency

    config = ctx.config
    rep = ctx.reporter
    expected = {service: source for service in config.stage.order}
    for pair in config.consistency:
        with Timed(result, f"consistency {pair.label}") as step:
            rep.waiting(f"{pair.label}: asking {pair.url} which {pair.callee} {pair.caller} reaches "
                        f"(must be {source[:7]}, deadline {pair.timeout:.0f}s)")
            with rep.status(f"{pair.label}: asking {pair.url}") as status:
                report = consistency.judge_pairs(config, [pair], expected, progress=status.update)[0]
            step.data = report.to_dict()
            step.detail = report.message
            if report.ok:
                rep.success(report.message)
                continue
            step.status = "failed"
            rep.failure(f"{pair.label}: {report.message}")
            return Failure(service=pair.caller, target=config.service(pair.caller).target,
                           report=consistency.as_report(report), timings=result.timings())
    return None


def _failure(service: str, config, report: HealthReport, result: StageResult) -> Failure:
    return Failure(service=service, target=config.service(service).target,
                   report=report, timings=result.timings())


def _failure_from(ctx, result: StageResult, exc: Exception) -> Failure:
    """A failure that is not a health verdict: a refused push, a broken file, a bug."""
    message = exc.message if isinstance(exc, GitopsctlError) else f"internal error: {type(exc).__name__}: {exc}"
    ctx.reporter.failure(f"{result.service}: {message}")
    target = "-"
    if result.service != "-":
        try:
            target = ctx.config.service(result.service).target
        except GitopsctlError:
            pass
    return Failure(service=result.service, target=target, message=message,
                   timings=result.timings())


def _failed_before_push(ctx, result: StageResult, exc: Exception, t0: float) -> StageResult:
    """Nothing of this source is on the remote: report, change nothing, keep the steps."""
    if isinstance(exc, GitopsctlError):
        error = exc
    else:
        error = GitopsctlError(f"internal error: {type(exc).__name__}: {exc}",
                               hint="this is a bug in gitopsctl; rerun with -v for the traceback")
        error.exit_code = EXIT_INTERNAL
        if ctx.reporter.verbose:
            import traceback

            traceback.print_exception(exc)
    result.outcome = "failed"
    result.error = error.to_dict()
    result.exit_code = error.exit_code
    result.elapsed = time.monotonic() - t0
    ctx.reporter.failure(f"nothing was deployed: {error}")
    return result


def _superseded(result: StageResult, exc: Superseded, t0: float, rep) -> StageResult:
    result.outcome = "superseded"
    result.exit_code = exc.exit_code
    result.steps.append(Step("superseded check", "skipped", 0.0, exc.message))
    result.elapsed = time.monotonic() - t0
    rep.warning(exc.message)
    return result


def _suspended(result: StageResult, exc: Suspended, t0: float, rep) -> StageResult:
    result.outcome = "suspended"
    result.exit_code = exc.exit_code
    result.error = exc.to_dict()
    result.steps.append(Step("suspended check", "failed", 0.0, exc.message))
    result.elapsed = time.monotonic() - t0
    rep.failure(f"nothing was deployed: {exc.message}")
    return result


def _finish(ctx, targets, result: StageResult, t0: float, failure: Failure,
            seen: list[DeployState]) -> StageResult:
    failpoints.reached("failure-verdict")
    with Timed(result, "rollback") as step:
        try:
            outcome = perform(ctx, targets, source=result.source, failure=failure, started=t0,
                              state=seen[0] if seen else None)
        except Superseded as exc:
            step.status = "skipped"
            return _superseded(result, exc, t0, ctx.reporter)
        except Exception as exc:  # noqa: BLE001 - a rollback that breaks is exit 3, never a crash
            step.status = "failed"
            step.detail = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            result.error = (exc.to_dict() if isinstance(exc, GitopsctlError)
                            else {"kind": "internal", "message": step.detail})
            result.exit_code = EXIT_HUMAN_NEEDED
            result.outcome = "rollback-failed"
            result.elapsed = time.monotonic() - t0
            ctx.reporter.failure(f"the rollback failed: {step.detail}")
            return result
        result.rollback = outcome
        step.detail = (f"revert {outcome.commit[:7]}" if outcome.commit else "nothing to revert")
        if outcome.exit_code != EXIT_ROLLED_BACK:
            step.status = "failed"
    result.exit_code = EXIT_ROLLED_BACK if outcome.exit_code == EXIT_ROLLED_BACK else EXIT_HUMAN_NEEDED
    result.outcome = "rolled-back" if result.exit_code == EXIT_ROLLED_BACK else "rollback-failed"
    result.elapsed = time.monotonic() - t0
    return result


def _resume_automation(ctx, source: str) -> str | None:
    """After a good stage, hand the image fields back to every automation a rollback suspended."""
    from gitopsctl.deploy import automation

    config = ctx.config
    if not automation.configured(config):
        return None
    done: list[str] = []

    def build(tip: str) -> str | None:
        edits, names, _ = automation.set_all(config, ctx.repo, tip, False)
        if not edits:
            return None
        done[:] = names
        message = gitrepo.format_message(
            f"chore: resume image automation after deploy of {source[:7]} {config.git.skip_marker}",
            [("Gitopsctl-Resume-Automation", name) for name in names])
        return gitrepo.commit_files(ctx.repo, tip, edits, message, commit_author(config))

    pushed, _ = gitrepo.push_built(ctx.repo, config.git.remote, config.git.branch, build,
                                   retries=config.git.push_retries, progress=ctx.reporter.waiting,
                                   label="resume-automation")
    if pushed is None:
        return None
    gitrepo.follow_remote(ctx.repo, config.git.remote, config.git.branch)
    return f"resumed {', '.join(done)} in {pushed[:7]}"
