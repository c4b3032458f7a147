"""Rollback: revert a deploy of every service in one commit, then verify.

Used by `stage` on a failed check (as a function) and by hand from a terminal. The
revert commit is the audit record: failed target and check, reason, evidence, timings.
Rolling back twice never reverts twice: what was reverted is read from git.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from gitopsctl import repo as gitrepo
from gitopsctl.deploy.converge import converge_all
from gitopsctl.deploy.state import DeployState, commit_author, read_state
from gitopsctl.errors import (EXIT_HUMAN_NEEDED, EXIT_OK, EXIT_ROLLED_BACK, GitopsctlError, Superseded,
                              UsageError)
from gitopsctl.health import HealthReport

_EVIDENCE_LINES = 25
_EVIDENCE_WIDTH = 240
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass
class Failure:
    """Why a rollback happens: which target failed which check, with the evidence."""

    service: str
    target: str
    report: HealthReport | None = None
    message: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def check(self) -> str:
        failed = self.report.failed_check if self.report else None
        return failed.name if failed else "deploy"

    @property
    def reason(self) -> str:
        if self.report and self.report.reason:
            return self.report.reason
        return self.message or f"{self.service} failed"

    def evidence(self) -> list[str]:
        lines: list[str] = []
        if self.report:
            for check in self.report.checks:
                if not check.ok:
                    lines.append(f"[{check.name}] {check.message}")
                    lines.extend(check.evidence)
        if self.message and self.message not in " ".join(lines):
            lines.append(self.message)
        return _clean(lines)


@dataclass
class RollbackResult:
    source: str | None
    reverted: list[dict]
    commit: str | None = None
    dry_run: bool = False
    already: bool = False
    live_after: dict[str, str | None] = field(default_factory=dict)
    verification: list[HealthReport] = field(default_factory=list)
    consistency: list = field(default_factory=list)  # consistency.PairReport after the revert
    verified: bool | None = None
    push_attempts: int = 0
    elapsed: float = 0.0
    exit_code: int = EXIT_ROLLED_BACK
    notes: list[str] = field(default_factory=list)
    error: dict | None = None

    def to_dict(self) -> dict:
        return {"source": self.source, "error": self.error, "dry_run": self.dry_run, "already_rolled_back": self.already,
                "commit": self.commit, "reverted": self.reverted, "live_after": self.live_after,
                "verified": self.verified, "verification": [r.to_dict() for r in self.verification],
                "consistency": [r.to_dict() for r in self.consistency],
                "push_attempts": self.push_attempts, "elapsed_seconds": round(self.elapsed, 3),
                "notes": self.notes, "exit_code": self.exit_code}

    def render_text(self, console: Any) -> None:
        verb = "would revert" if self.dry_run else ("already reverted" if self.already else "reverted")
        short = (self.source or "?")[:7]
        console.print(f"rollback of {short}: {verb} {len(self.reverted)} deploy commit(s)",
                      markup=False)
        for item in self.reverted:
            console.print(f"  {item['commit'][:7]}  {item['service']:<9} {item['image'] or ''}",
                          markup=False)
        if self.commit:
            console.print(f"  revert commit {self.commit[:7]}", markup=False)
        for service, image in self.live_after.items():
            console.print(f"  {service} goes live as: {image or '(the image in git before gitopsctl deployed it)'}",
                          markup=False)
        for report in self.verification:
            state = "healthy" if report.healthy else f"NOT healthy: {report.reason}"
            console.print(f"  {report.target}: {state}", markup=False)
        for pair in self.consistency:
            console.print(f"  {pair.pair}: {'ok' if pair.ok else 'FAILED'}: {pair.message}", markup=False)
        for note in self.notes:
            console.print(f"  note: {note}", markup=False)


def rollback(ctx, targets: Any, *, to: str | None = None, source: str | None = None,
             reason: str | None = None, dry_run: bool = False,
             verify: bool = True) -> RollbackResult:
    """A manual rollback (reason defaults to 'manual rollback') onto `targets` (a TargetSet)."""
    failure = None
    if reason:
        failure = Failure(service="-", target="-", message=reason)
    return perform(ctx, targets, to=to, source=source, failure=failure, dry_run=dry_run, verify=verify,
                   manual_reason=reason or "manual rollback")


def perform(ctx, targets: Any, *, to: str | None = None, source: str | None = None,
            failure: Failure | None = None, dry_run: bool = False, verify: bool = True,
            manual_reason: str = "manual rollback", started: float | None = None,
            state: DeployState | None = None) -> RollbackResult:
    """Revert a deploy in one commit built on the remote tip, push it, verify.

    Idempotent: what is already reverted is read from git, so a rerun (same or fresh
    clone, after a kill anywhere) never reverts a second release. A plain rollback undoes
    the newest deploy only while no rollback came after it; going further back is --to.
    `state`: the caller's deploy state (stage's), followed to the new tip, not read again.
    """
    config = ctx.config
    root = ctx.repo
    rep = ctx.reporter
    t0 = started if started is not None else time.monotonic()
    if to and source:
        raise UsageError("--to and --source cannot be combined",
                         hint="--source SHA undoes that deploy; --to SHA returns to the deploy of SHA")
    tip = gitrepo.fetch(root, config.git.remote, config.git.branch, meanwhile=targets.prepare)
    state = state.advance(tip) if state is not None else read_state(root, tip)
    if to:
        to = gitrepo.resolve_source(root, to)
    elif source:
        source = gitrepo.resolve_source(root, source)
    source, commits, already = _select(state, to=to, source=source)

    result = RollbackResult(source=source, reverted=[_item(r) for r in commits], dry_run=dry_run)
    result.live_after = _live_after(state, commits)
    if not commits:
        result.already = already is not None
        result.commit = already.commit if already else None
        result.notes.append("nothing to revert: " + (
            f"rollback commit {already.commit[:7]} already reverted "
            f"{(already.source or '?')[:7]}; use --to SOURCE to go further back" if already
            else "every deploy after that source is already reverted"))
        rep.success(result.notes[-1])
    if dry_run:
        result.exit_code = EXIT_OK
        return result

    if commits:
        try:
            state = _revert_and_push(ctx, result, state, source, commits, failure, manual_reason, t0)
        except GitopsctlError as exc:
            # Nothing was forced and nothing half-pushed: the remote still has the failed
            # release, so a human must act (or rerun once the cause is fixed).
            result.exit_code = EXIT_HUMAN_NEEDED
            result.verified = False
            result.error = exc.to_dict()
            result.notes.append(f"the rollback could not be pushed: {exc.message}"
                                + (f" ({exc.hint})" if exc.hint else ""))
            rep.failure(result.notes[-1])
            result.elapsed = time.monotonic() - t0
            return result
        gitrepo.follow_remote(root, config.git.remote, config.git.branch)

    if verify:
        revision = gitrepo.resolve_commit(root, gitrepo.remote_ref(config))
        result.verification = converge_all(targets, config.stage.order, revision,
                                           config.timeouts.failure, rep)
        result.verified = all(r.healthy for r in result.verification)
        if not result.verified:
            bad = [r for r in result.verification if not r.healthy]
            result.notes.append(
                "the previous version is NOT healthy after the rollback; look at: "
                + "; ".join(f"{r.target}: {r.reason}" for r in bad))
            rep.failure(result.notes[-1])
        else:
            rep.success("previous version is live and healthy again")
            result.verified = _agree_after(ctx, result, state.advance(revision))
        result.exit_code = EXIT_ROLLED_BACK if result.verified else EXIT_HUMAN_NEEDED
    else:
        result.exit_code = EXIT_ROLLED_BACK
    result.elapsed = time.monotonic() - t0
    return result


def _agree_after(ctx, result: RollbackResult, state: DeployState) -> bool:
    """The consistency pairs against what git says is live after the revert: healthy
    services that cannot talk to each other are not a rollback that worked."""
    from gitopsctl.deploy import consistency

    config = ctx.config
    if not config.consistency:
        return True
    result.consistency = consistency.judge_live(config, state, config.consistency,
                                                progress=ctx.reporter.waiting)
    bad = [r for r in result.consistency if not r.ok]
    if not bad:
        ctx.reporter.success("after the rollback: " + "; ".join(r.message for r in result.consistency))
        return True
    result.notes.append(
        "after the rollback every service is healthy, but " + "; ".join(
            f"{r.pair}: {r.message}" for r in bad)
        + " — the cause is not in the reverted deploy commits (a change to the route itself?)")
    ctx.reporter.failure(result.notes[-1])
    return False


def _select(state: DeployState, *, to: str | None, source: str | None):
    """(source, deploy commits to revert newest first, the rollback that already did it)."""
    if to:
        return state.latest_live_source(), _commits_since(state, to), None
    if source:
        commits = state.live_of_source(source)
        _ensure_latest(state, source, commits)
        return source, commits, None if commits else state.rollback_of(source)
    newest = state.newest_record()
    if newest is not None and newest.kind == "rollback":
        # The last thing that happened is a rollback: a rerun must not take the release
        # before it down too.
        return newest.source, [], newest
    source = state.latest_live_source()
    if source is None:
        raise UsageError("there is no deploy to roll back",
                         hint="`gitopsctl status` lists deploys and rollbacks read from git log")
    commits = state.live_of_source(source)
    _ensure_latest(state, source, commits)
    return source, commits, None


def _revert_and_push(ctx, result: RollbackResult, state: DeployState, source: str | None,
                     commits: list, failure: Failure | None, manual_reason: str,
                     t0: float) -> DeployState:
    """Push the revert; the state returned is the one at the tip the last attempt saw."""
    config = ctx.config
    root = ctx.repo
    rep = ctx.reporter
    message = _message(config, source, commits, failure, manual_reason, t0)
    wanted = {c.commit for c in commits}
    rep.action(f"reverting {', '.join(c.commit[:7] for c in commits)} in one commit")
    seen = [state]

    def build(tip: str) -> str | None:
        seen[0] = now = seen[0].advance(tip)
        if all(now.is_reverted(c) for c in wanted):
            return None  # another run pushed this rollback meanwhile
        return gitrepo.revert_onto(root, tip, [c.commit for c in commits],
                                   _with_pause(message, now), commit_author(config),
                                   extra=_suspend_automation(ctx, tip))

    pushed, attempts = gitrepo.push_built(root, config.git.remote, config.git.branch, build,
                                          retries=config.git.push_retries, progress=rep.waiting,
                                          label="rollback")
    result.push_attempts = attempts
    if pushed is None:
        result.already = True
        result.notes.append("another run pushed this rollback first")
        result.commit = seen[0].newest_record().commit
    else:
        result.commit = pushed
        rep.success(f"revert {pushed[:7]} pushed after {time.monotonic() - t0:.1f}s")
    return seen[0]


def _with_pause(message: str, state: DeployState) -> str:
    """The message with the pause state at the tip it is built on (DeployState.pause)."""
    key, value = state.suspension_trailer()
    marker = "\nGitopsctl-Rollback-Of: "
    at = message.rfind(marker)
    return message[:at] + f"\n{key}: {value}" + message[at:] if at >= 0 else message


# ---------------------------------------------------------------- helpers

def _item(record) -> dict:
    return {"commit": record.commit, "service": record.service, "source": record.source,
            "image": record.image}


def _commits_since(state: DeployState, to: str) -> list:
    """Live deploy commits newer than the newest live deploy of source `to`."""
    anchor = next((r for r in state.iter_deploys()
                   if r.source and r.source.startswith(to[:12]) and not state.is_reverted(r.commit)),
                  None)
    if anchor is None:
        raise UsageError(f"no live deploy of source {to[:7]} on the branch",
                         hint="pick a source from `gitopsctl status` (deploys that were not rolled back)")
    return state.newer_than(anchor.commit)


def _ensure_latest(state: DeployState, source: str, commits: list) -> None:
    """Never roll back a newer deploy: if another source deployed after ours, stop."""
    if not commits:
        return
    oldest = commits[-1].commit
    newer = [r for r in state.newer_than(oldest) if r.commit not in {c.commit for c in commits}]
    if newer:
        raise Superseded(
            f"source {source[:7]} is no longer the latest deploy: {newer[0].service} "
            f"{(newer[0].source or '?')[:7]} was deployed after it (commit {newer[0].commit[:7]})",
            hint="roll back the newer deploy first, or use --to SOURCE_SHA to return to a version",
            details={"newer": [_item(r) for r in newer]})


def _live_after(state: DeployState, commits: list) -> dict[str, str | None]:
    gone = {c.commit for c in commits}
    out: dict[str, str | None] = {}
    for record in commits:
        if record.service not in out:
            previous = state.previous_live(record.service, gone)
            out[record.service] = previous.image if previous else None
    return out


def _clean(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        for part in str(line).splitlines() or [""]:
            part = _CONTROL.sub("", part).rstrip()
            if len(part) > _EVIDENCE_WIDTH:
                part = part[:_EVIDENCE_WIDTH] + "…"
            out.append(part)
    return out[-_EVIDENCE_LINES:]


def _message(config, source: str | None, commits: list, failure: Failure | None,
             manual_reason: str, t0: float) -> str:
    short = (source or "?")[:7]
    reason = failure.reason if failure else manual_reason
    reason = _CONTROL.sub("", reason).replace("\n", " ").strip()[:160]
    subject = f"rollback: {short} — {reason} {config.git.skip_marker}"
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    body_lines = []
    if failure and failure.target != "-":
        body_lines.append(f"Failed target: {failure.target} ({failure.service}), check: {failure.check}")
    else:
        body_lines.append("Requested by hand." if not failure else f"Requested: {reason}")
    for name, seconds in (failure.timings.items() if failure else []):
        body_lines.append(f"Timing: {name} {seconds:.1f}s")
    body_lines.append(f"Rollback started {now}, {time.monotonic() - t0:.1f}s after the deploy step began")
    for record in commits:
        body_lines.append(f"Undoes {record.service}: {record.image or '?'} ({record.commit[:7]})")
    evidence = failure.evidence() if failure else []
    trailers = [("Reverts", ", ".join(c.commit for c in commits)), ("Reason", reason)]
    if evidence:
        trailers.append(("Evidence", evidence[0] + "".join("\n " + (e or ".") for e in evidence[1:])))
    if failure and failure.target != "-":
        trailers.append(("Gitopsctl-Failed-Target", failure.target))
        trailers.append(("Gitopsctl-Failed-Check", failure.check))
    trailers.append(("Gitopsctl-Rollback-Of", source or "unknown"))
    return gitrepo.format_message(subject, trailers, body="\n".join(body_lines))


def _suspend_automation(ctx, tip: str) -> dict[str, tuple[str, bytes]]:
    """The edits suspending Flux image automation at `tip`, so nothing undoes the rollback."""
    from gitopsctl.deploy import automation

    return automation.suspend_edits(ctx.config, ctx.repo, tip, ctx.reporter)
