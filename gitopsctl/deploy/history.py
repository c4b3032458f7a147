"""History: every deploy, rollback, suspend and resume on the branch, newest first.

Read from the trailers in `git log` of the remote branch after a fetch (the local clone,
with a warning, when the remote cannot be reached), like `kubectl rollout history` and
`argocd app history`. Filters combine: a service, a source, a start time, a count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from gitopsctl import repo as gitrepo
from gitopsctl.errors import EXIT_OK, GitopsctlError, UsageError
from gitopsctl.repo import DeployRecord, records

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SINCE_HINT = "e.g. --since 2h, --since 7d, --since 2026-11-30 or --since 2026-11-30T18:00:00Z"


@dataclass
class HistoryResult:
    branch: str
    tip: str
    offline: bool = False
    filters: dict = field(default_factory=dict)
    entries: list[dict] = field(default_factory=list)
    exit_code: int = EXIT_OK

    def to_dict(self) -> dict:
        return {"branch": self.branch, "tip": self.tip, "offline": self.offline,
                "filters": self.filters, "entries": self.entries}


def history(ctx, *, service: str | None = None, source: str | None = None,
            since: str | None = None, limit: int | None = None) -> HistoryResult:
    config = ctx.config
    root = ctx.repo
    if service is not None:
        config.service(service)  # an unknown name is exit 2 with the known names as hint
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be at least 1, got {limit}", hint="e.g. --limit 20")
    cutoff = parse_since(since) if since is not None else None
    offline = False
    try:
        gitrepo.fetch(root, config.git.remote, config.git.branch)
        ref = gitrepo.remote_ref(config)
    except GitopsctlError as exc:  # offline still shows what the clone knows, as status does
        ctx.reporter.warning(f"cannot fetch, showing the local clone: {exc.message}")
        ref, offline = "HEAD", True
    if source is not None:
        source = gitrepo.resolve_source(root, source, option="--source")
    tip = gitrepo.resolve_commit(root, ref)
    log = gitrepo.deploy_log(root, tip, pauses=True)
    reverted_by = _reverted_by(log)
    deploy_services = {r.commit: r.service for r in log if r.kind == "deploy"}
    result = HistoryResult(branch=f"{config.git.remote}/{config.git.branch}", tip=tip,
                           offline=offline,
                           filters={"service": service, "source": source, "limit": limit,
                                    "since": cutoff.strftime("%Y-%m-%dT%H:%M:%SZ") if cutoff else None})
    for record in log:
        if cutoff is not None and record.timestamp < cutoff.timestamp():
            continue  # not `break`: a rebased commit can be older than its parent
        services = _services(record, deploy_services)
        if service is not None and services and service not in services:
            continue
        if source is not None and not _same(record.source, source):
            continue
        result.entries.append(_entry(record, services, reverted_by))
        if limit is not None and len(result.entries) >= limit:
            break
    return result


def parse_since(raw: str) -> datetime:
    """A start time: a duration back from now (90m, 2h, 7d, 1w) or an ISO date or time
    (UTC unless it names an offset)."""
    text = raw.strip()
    match = _DURATION.match(text)
    if match:
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        return datetime.now(timezone.utc) - timedelta(seconds=seconds)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since: cannot read {raw!r} as a duration or a date",
                         hint=_SINCE_HINT) from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _services(record: DeployRecord, deploy_services: dict[str, str | None]) -> list[str]:
    """The services a record concerns; [] for a suspend or resume, which concern all."""
    if record.kind == "rollback":
        found = [deploy_services.get(c) or _by_prefix(deploy_services, c) for c in record.reverts]
        return sorted({s for s in found if s})
    return [record.service] if record.service else []


def _by_prefix(deploy_services: dict[str, str | None], commit: str) -> str | None:
    if len(commit) < 7:
        return None
    return next((s for c, s in deploy_services.items() if c.startswith(commit)), None)


def _reverted_by(log: list[DeployRecord]) -> dict[str, str]:
    """Deploy commit -> the rollback commit that reverted it (the oldest one, the first)."""
    out: dict[str, str] = {}
    deploys = [r.commit for r in log if r.kind == "deploy"]
    for record in reversed(log):  # oldest first, so the first rollback wins
        if record.kind != "rollback":
            continue
        for prefix in record.reverts:
            for commit in deploys:
                if len(prefix) >= 7 and commit.startswith(prefix):
                    out.setdefault(commit, record.commit)
    return out


def _entry(record: DeployRecord, services: list[str], reverted_by: dict[str, str]) -> dict:
    by = None
    if record.kind in ("suspend", "resume"):
        key = records.SUSPENDED_BY if record.kind == "suspend" else records.RESUMED_BY
        by = (record.trailers.get(key) or (None,))[0]
    return {"when": datetime.fromtimestamp(record.timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ"),
            "timestamp": record.timestamp, "commit": record.commit, "kind": record.kind,
            "services": services, "source": record.source, "image": record.image,
            "reason": record.reason, "by": by, "reverts": list(record.reverts),
            "reverted_by": reverted_by.get(record.commit), "subject": record.subject}


def _same(a: str | None, b: str) -> bool:
    if not a:
        return False
    n = min(len(a), len(b))
    return n >= 7 and a[:n].lower() == b[:n].lower()
