"""Pausing deploys: one commit suspends stage and Flux image automation, one resumes them.

The state is git's: the newest suspend or resume record on the branch decides, so every
clone and every pipeline agrees without a lock file or a server. A suspend commit also
sets `spec.suspend: true` on each configured ImageUpdateAutomation (automation.py) and
names the ones it changed; the resume sets exactly those back, so an automation a
rollback holds suspended stays suspended until the next good stage, and so does every
one when a rollback came while deploys were suspended.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from gitopsctl import repo as gitrepo
from gitopsctl.repo import records
from gitopsctl.deploy.state import DeployState, commit_author, read_state
from gitopsctl.errors import EXIT_OK, GitopsctlError, Suspended, UsageError

# Who runs a command in CI is the forge's actor, not the runner's $USER.
ACTOR_VARIABLES = ("GITEA_ACTOR", "GITHUB_ACTOR", "USER", "LOGNAME")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_REASON_LIMIT = 200


@dataclass(frozen=True)
class Suspension:
    """The newest suspend record on a branch that no resume followed."""

    commit: str
    reason: str
    by: str
    timestamp: int
    automations: tuple[str, ...] = ()

    @property
    def since(self) -> str:
        return datetime.fromtimestamp(self.timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")

    def describe(self) -> str:
        return f"deploys are suspended by {self.by} since {self.since} ({self.commit[:7]}): {self.reason}"

    def to_dict(self) -> dict:
        return {"suspended": True, "commit": self.commit, "reason": self.reason, "by": self.by,
                "since": self.since, "timestamp": self.timestamp,
                "automations": list(self.automations)}


def current(root: Path | str, rev: str, state: DeployState | None = None) -> Suspension | None:
    """The suspension standing at `rev`, or None when deploys run; `state`: the command's
    deploy state at `rev`, so the log is not read a second time."""
    if state is None:
        state = read_state(Path(root), rev)
    record = state.pause()
    if record is None:
        return None
    trailers = record.trailers
    return Suspension(commit=record.commit, reason=record.reason or "", timestamp=record.timestamp,
                      by=(trailers.get(records.SUSPENDED_BY) or ("unknown",))[0],
                      automations=tuple(trailers.get(records.SUSPEND_AUTOMATION, ())))


def ensure_not_suspended(root: Path | str, rev: str, state: DeployState | None = None) -> None:
    """Raise Suspended (exit 5) when deploys are suspended at `rev`."""
    standing = current(root, rev, state)
    if standing is not None:
        raise Suspended(standing.describe(),
                        hint="nothing was pushed; `gitopsctl resume --reason TEXT` lets deploys "
                             "run again, then rerun this stage",
                        details=standing.to_dict())


def actor(environ: Mapping[str, str]) -> str:
    """Who asked: the CI actor when a forge runs us, else the login name (the account's
    when the environment names none, as in a container)."""
    for name in ACTOR_VARIABLES:
        value = _one_line(environ.get(name) or "")
        if value:
            return value
    try:
        import pwd

        return _one_line(pwd.getpwuid(os.getuid()).pw_name) or "unknown"
    except (ImportError, KeyError):
        return "unknown"


@dataclass
class PauseResult:
    action: str                        # "suspend" or "resume"
    changed: bool
    commit: str | None = None
    reason: str | None = None
    by: str | None = None
    automations: list[str] = field(default_factory=list)
    standing: Suspension | None = None  # the suspension found (resume) or kept (suspend twice)
    push_attempts: int = 0
    message: str = ""
    exit_code: int = EXIT_OK

    def to_dict(self) -> dict:
        return {"action": self.action, "changed": self.changed, "commit": self.commit,
                "reason": self.reason, "by": self.by, "automations": self.automations,
                "suspension": self.standing.to_dict() if self.standing else None,
                "push_attempts": self.push_attempts, "message": self.message,
                "exit_code": self.exit_code}

    def render_text(self, console: Any) -> None:
        console.print(self.message, markup=False)
        for name in self.automations:
            verb = "suspended" if self.action == "suspend" else "resumed"
            console.print(f"  image automation {name} {verb}", markup=False)


def suspend(ctx, *, reason: str) -> PauseResult:
    """One commit on the remote branch that suspends deploys and image automation."""
    reason = _one_line(reason)[:_REASON_LIMIT]
    if not reason:
        raise UsageError("suspend needs a reason", hint='gitopsctl suspend --reason "TEXT"')
    return _pause(ctx, "suspend", reason)


def resume(ctx, *, reason: str | None = None) -> PauseResult:
    """One commit on the remote branch that lets deploys (and the automation) run again."""
    return _pause(ctx, "resume", _one_line(reason or "")[:_REASON_LIMIT] or "resumed")


def _pause(ctx, action: str, reason: str) -> PauseResult:
    from gitopsctl.deploy import automation

    config = ctx.config
    root = ctx.repo
    who = actor(ctx.environ)
    result = PauseResult(action=action, changed=False, reason=reason, by=who)

    states: list[DeployState] = []

    def build(tip: str) -> str | None:
        # One read of the log per command: a retry reads only what was pushed meanwhile.
        states[:] = [states[0].advance(tip) if states else read_state(Path(root), tip)]
        standing = current(root, tip, states[0])
        result.standing = standing
        if (standing is not None) == (action == "suspend"):
            return None  # already in the state asked for: no commit
        if action == "suspend":
            edits, names, missing = automation.set_all(config, root, tip, True)
            for name in missing:
                ctx.reporter.warning(f"{automation.KIND} {name} not found at {tip[:7]}; "
                                     "it cannot be suspended")
            trailers = [(records.SUSPEND, reason), (records.SUSPENDED_BY, who)]
            trailers += [(records.SUSPEND_AUTOMATION, name) for name in names]
            subject = f"chore: suspend deploys — {reason}"
        else:
            held = _rolled_back_since(states[0], standing.commit)
            if held is not None:
                ctx.reporter.warning(f"rollback {held[:7]} came after the suspend: image "
                                     "automation stays suspended until the next good stage")
            ours = () if held is not None else standing.automations
            edits, names = _resume_edits(config, root, tip, ours)
            trailers = [(records.RESUME, reason), (records.RESUMED_BY, who)]
            subject = "chore: resume deploys"
        result.automations = names
        message = gitrepo.format_message(f"{subject} {config.git.skip_marker}".rstrip(), trailers)
        if not edits:  # nothing to switch off in a file: the commit is the record alone
            return records.record_commit(root, tip, message, commit_author(config))
        return gitrepo.commit_files(root, tip, edits, message, commit_author(config))

    pushed, attempts = gitrepo.push_built(root, config.git.remote, config.git.branch, build,
                                          retries=config.git.push_retries,
                                          progress=ctx.reporter.waiting, label=action)
    result.push_attempts = attempts
    if pushed is None:
        result.automations = []
        result.message = (f"already suspended, nothing changed: {result.standing.describe()}"
                          if action == "suspend" else "deploys are not suspended, nothing changed")
        ctx.reporter.success(result.message)
        return result
    result.changed, result.commit = True, pushed
    try:
        gitrepo.follow_remote(root, config.git.remote, config.git.branch)
    except GitopsctlError as exc:  # the commit is pushed; a checkout left behind is only stale
        ctx.reporter.warning(f"the local checkout was not fast-forwarded: {exc.message}")
    if action == "suspend":
        result.message = (f"deploys suspended in {pushed[:7]} by {who}: {reason}; "
                          "`gitopsctl resume` lets them run again")
    else:
        result.message = f"deploys resumed in {pushed[:7]} by {who}"
    ctx.reporter.success(result.message)
    return result


def _rolled_back_since(state: DeployState, suspended_at: str) -> str | None:
    """The newest rollback after the suspend, if any: the automation is then the rollback's
    to hold (automation.py), not the suspend's to hand back. The walk that found the
    suspend has read every record newer than it."""
    for record in state.recent_until(suspended_at):
        if record.kind == "rollback":
            return record.commit
    return None


def _resume_edits(config, root: Path | str, tip: str, names: tuple[str, ...]):
    """Edits setting spec.suspend back to false on the automations the suspend changed."""
    from gitopsctl.deploy import automation

    edits: dict[str, tuple[str, bytes]] = {}
    done: list[str] = []
    for ref in automation.configured(config):
        name = f"{ref.namespace}/{ref.name}"
        if name not in names:
            continue  # suspended by someone else (a rollback): not ours to resume
        found = automation.find_at(root, tip, ref.name, ref.namespace)
        if found is None:
            continue
        manifest, mode, text = found
        path = str(manifest.path)
        if path in edits:  # two automations in one file: edit the edited text
            text = edits[path][1].decode("utf-8")
            manifest = automation.find_in_text(manifest.path, text, ref.name, ref.namespace) or manifest
        new_text = automation.suspended_text(text, manifest, False)
        if new_text != text:
            edits[path] = (mode, new_text.encode("utf-8"))
            done.append(name)
    return edits, done


def _one_line(value: str) -> str:
    return _CONTROL.sub(" ", value).strip()
