"""Deploys and rollbacks as commits with trailers: writing the message, reading the log.

Trailer format (see docs/bump-and-check.md and DESIGN.md):

    deploy(frontend): 1a2b3c4 → harbor.lan/homelab/frontend:main-1a2b3c4-1 [skip ci]

    Gitopsctl-Source: <full source sha>
    Gitopsctl-Stage: frontend
    Gitopsctl-Image: harbor.lan/homelab/frontend:main-1a2b3c4-1@sha256:…
    Gitopsctl-Suspension: none              (or the suspend commit standing at the parent)

    rollback: 1a2b3c4 — frontend CrashLoopBackOff [skip ci]

    Reverts: <D1>, <D2>
    Reason: …
    Evidence: …
    Gitopsctl-Suspension: none
    Gitopsctl-Rollback-Of: <source sha>

    chore: suspend deploys — <reason> [skip ci]

    Gitopsctl-Suspend: <reason>
    Gitopsctl-Suspended-By: <who>
    Gitopsctl-Suspend-Automation: flux-system/<name>   (one per automation it suspended)

    chore: resume deploys [skip ci]

    Gitopsctl-Resume: <reason>
    Gitopsctl-Resumed-By: <who>
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from gitopsctl.errors import ExternalError
from gitopsctl.repo.runner import run

SOURCE = "Gitopsctl-Source"
STAGE = "Gitopsctl-Stage"
IMAGE = "Gitopsctl-Image"
ROLLBACK_OF = "Gitopsctl-Rollback-Of"
REVERTS = "Reverts"
REASON = "Reason"
EVIDENCE = "Evidence"
# Pausing deploys (deploy/suspension.py). `Gitopsctl-Resume-Automation`, written by a good
# stage, is another trailer: the greps below anchor on the colon.
SUSPEND = "Gitopsctl-Suspend"
SUSPENDED_BY = "Gitopsctl-Suspended-By"
SUSPEND_AUTOMATION = "Gitopsctl-Suspend-Automation"
RESUME = "Gitopsctl-Resume"
RESUMED_BY = "Gitopsctl-Resumed-By"

_TRAILER_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*): ?(.*)$")


@dataclass(frozen=True)
class Author:
    name: str
    email: str


@dataclass(frozen=True)
class DeployRecord:
    """A gitopsctl commit read back from `git log`."""

    commit: str
    kind: str                  # "deploy" or "rollback"; "suspend" or "resume" when asked for
    subject: str
    timestamp: int
    service: str | None = None     # Gitopsctl-Stage
    source: str | None = None      # Gitopsctl-Source (deploys) / Gitopsctl-Rollback-Of
    image: str | None = None
    reverts: tuple[str, ...] = ()
    reason: str | None = None
    trailers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"commit": self.commit, "kind": self.kind, "subject": self.subject,
                "timestamp": self.timestamp, "service": self.service, "source": self.source,
                "image": self.image, "reverts": list(self.reverts), "reason": self.reason}


def format_message(subject: str, trailers: Sequence[tuple[str, str]], body: str = "") -> str:
    """Subject, optional body, then one `Key: value` trailer per line.

    Every part is redacted: a commit is pushed and kept forever, so no secret that
    reached evidence or a reason may be written into one.
    """
    from gitopsctl.redact import redact

    subject, body = redact(subject), redact(body)
    trailers = [(key, redact(value)) for key, value in trailers]
    parts = [subject.strip()]
    if body.strip():
        parts.append(body.strip())
    if trailers:
        lines = []
        for key, value in trailers:
            if not _TRAILER_RE.match(f"{key}: x") or "\n" in value and not _indented(value):
                raise ValueError(f"bad trailer {key!r}")
            lines.append(f"{key}: {value}")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _indented(value: str) -> bool:
    """Multi-line trailer values continue on lines starting with a space (git's rule)."""
    return all(line.startswith(" ") for line in value.split("\n")[1:])


def parse_trailers(message: str) -> dict[str, tuple[str, ...]]:
    """Trailers of the last paragraph, `Key: value`, continuation lines indented."""
    paragraphs = [p for p in re.split(r"\n\s*\n", message.strip()) if p.strip()]
    if len(paragraphs) < 2:
        return {}
    out: dict[str, list[str]] = {}
    last_key: str | None = None
    for line in paragraphs[-1].splitlines():
        match = _TRAILER_RE.match(line)
        if match and not line.startswith(" "):
            last_key = match.group(1)
            out.setdefault(last_key, []).append(match.group(2).strip())
        elif line.startswith(" ") and last_key:
            out[last_key][-1] += "\n" + line.strip()
        else:
            return {}  # not a trailer block
    return {k: tuple(v) for k, v in out.items()}


def _record(commit: str, timestamp: int, message: str) -> DeployRecord | None:
    trailers = parse_trailers(message)
    subject = message.split("\n", 1)[0].strip()
    first = lambda key: trailers.get(key, (None,))[0]  # noqa: E731
    if ROLLBACK_OF in trailers or REVERTS in trailers:
        reverts = tuple(s.strip() for value in trailers.get(REVERTS, ())
                        for s in re.split(r"[,\s]+", value) if s.strip())
        return DeployRecord(commit, "rollback", subject, timestamp, service=first(STAGE),
                            source=first(ROLLBACK_OF), reverts=reverts, reason=first(REASON),
                            trailers=trailers)
    if SOURCE in trailers and STAGE in trailers:
        return DeployRecord(commit, "deploy", subject, timestamp, service=first(STAGE),
                            source=first(SOURCE), image=first(IMAGE), trailers=trailers)
    if SUSPEND in trailers:
        return DeployRecord(commit, "suspend", subject, timestamp, reason=first(SUSPEND),
                            trailers=trailers)
    if RESUME in trailers:
        return DeployRecord(commit, "resume", subject, timestamp, reason=first(RESUME),
                            trailers=trailers)
    return None


_DEPLOY_GREPS = (SOURCE, ROLLBACK_OF, REVERTS)
_PAUSE_GREPS = (SUSPEND, RESUME)


def deploy_log(root: Path | str, rev: str = "HEAD", *, limit: int | None = None,
               deploys: bool = True, pauses: bool = False) -> list[DeployRecord]:
    """Deploys and rollbacks reachable from `rev`, newest first; with `pauses`, the
    suspend and resume records too (`deploys=False`: only those)."""
    keys = (_DEPLOY_GREPS if deploys else ()) + (_PAUSE_GREPS if pauses else ())
    args = ["log", "--first-parent", "--format=%H%x1f%ct%x1f%B%x1e",
            *(f"--grep=^{key}:" for key in keys), rev, "--"]
    proc = run(root, args, ok_codes=(0, 128))
    if proc.returncode != 0:
        why = proc.stderr.decode("utf-8", "replace").strip()
        if "does not have any commits" in why or "unknown revision" in why \
                or "bad revision" in why:
            return []  # an empty repository, or a branch not fetched yet: nothing deployed
        raise ExternalError(f"git log failed: {why}")
    records: list[DeployRecord] = []
    for chunk in proc.stdout.decode("utf-8", "replace").split("\x1e"):
        chunk = chunk.strip("\n")
        if not chunk:
            continue
        sha, ts, message = chunk.split("\x1f", 2)
        record = _record(sha, int(ts), message)
        if record is not None and (deploys or record.kind in ("suspend", "resume")) \
                and (pauses or record.kind in ("deploy", "rollback")):
            records.append(record)
            if limit is not None and len(records) >= limit:
                break
    return records


RECORD_GREPS = _DEPLOY_GREPS + _PAUSE_GREPS
# Written on deploys and rollbacks: the pause state at the commit's parent ("none", or the
# suspend commit standing), so the newest pause state is found at the newest record
# instead of by a walk back to the newest suspend or resume, however old.
SUSPENSION = "Gitopsctl-Suspension"


@dataclass(frozen=True)
class LogPage:
    """One `git log --first-parent` read: records newest first, and where the walk stopped."""

    records: list[DeployRecord]
    commits: int               # commits git listed (records and ones whose trailers do not parse)
    first_parent: str | None   # of the oldest commit listed; None: that was a root commit
    newest_parent: str | None = None  # of the newest commit listed
    missing: bool = False      # a revision asked for is not in this clone
    parents: Mapping[str, str | None] = field(default_factory=dict)  # record -> first parent


def log_page(root: Path | str, start: str, *, count: int | None = None,
             exclude: Sequence[str] = (), every_commit: bool = False) -> LogPage:
    """Deploy, rollback, suspend and resume records on the first-parent chain from `start`,
    newest first: at most `count` matching commits, none reachable from `exclude`;
    `every_commit` lists every commit (no grep), so the caller sees the chain whole."""
    args = ["log", "--first-parent", "--format=%H%x1f%P%x1f%ct%x1f%B%x1e"]
    if count is not None:
        args.append(f"-n{count}")
    if not every_commit:
        args += [f"--grep=^{key}:" for key in RECORD_GREPS]
    args += [start, *(f"^{rev}" for rev in exclude), "--"]
    proc = run(root, args, ok_codes=(0, 128))
    if proc.returncode != 0:
        why = proc.stderr.decode("utf-8", "replace").strip()
        if any(sign in why for sign in ("does not have any commits", "unknown revision",
                                        "bad revision", "bad object")):
            return LogPage([], 0, None, missing=True)
        raise ExternalError(f"git log failed: {why}")
    records: list[DeployRecord] = []
    first_parents: dict[str, str | None] = {}
    commits = 0
    parent: str | None = None
    newest_parent: str | None = None
    for chunk in proc.stdout.decode("utf-8", "replace").split("\x1e"):
        chunk = chunk.strip("\n")
        if not chunk:
            continue
        sha, parents, ts, message = chunk.split("\x1f", 3)
        parent = parents.split()[0] if parents.strip() else None
        if commits == 0:
            newest_parent = parent
        commits += 1
        record = _record(sha, int(ts), message)
        if record is not None:
            records.append(record)
            first_parents[sha] = parent
    return LogPage(records, commits, parent, newest_parent, parents=first_parents)


def record_commit(root: Path | str, parent: str, message: str, author: Author) -> str:
    """A commit on `parent` with `parent`'s tree: a record that edits no file (a suspend or
    resume with no image automation to touch). Not pushed here."""
    tree = run(root, ["rev-parse", f"{parent}^{{tree}}"]).stdout.decode().strip()
    return run(root, ["commit-tree", tree, "-p", parent, "-F", "-"], data=message.encode(),
               author=author).stdout.decode().strip()


def commit_message(root: Path | str, sha: str) -> str:
    """The message of commit `sha`, byte for byte as committed (headers cut off)."""
    raw = run(root, ["cat-file", "commit", sha]).stdout
    return raw.split(b"\n\n", 1)[1].decode("utf-8", "replace") if b"\n\n" in raw else ""
