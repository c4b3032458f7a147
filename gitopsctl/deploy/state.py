"""What git says is deployed: live deploys, rollbacks, and who supersedes whom.

Everything here is derived from the trailers in `git log` of the remote branch, so a
crashed or cancelled run can always be resumed from the same facts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gitopsctl import repo as gitrepo
from gitopsctl.errors import ExternalError, InputError, Superseded
from gitopsctl.repo import DeployRecord, MissingHistory


@dataclass
class DeployState:
    """Deploy and rollback records of one branch tip, newest first."""

    tip: str
    records: list[DeployRecord]
    reverted: set[str] = field(default_factory=set)
    # False in a shallow clone: what is not found may be in history that is not here.
    complete: bool = True

    def __post_init__(self) -> None:
        for record in self.records:
            if record.kind == "rollback":
                self.reverted.update(record.reverts)

    def is_reverted(self, commit: str) -> bool:
        return any(commit.startswith(p) for p in self.reverted if len(p) >= 7)

    @property
    def deploys(self) -> list[DeployRecord]:
        return [r for r in self.records if r.kind == "deploy"]

    @property
    def rollbacks(self) -> list[DeployRecord]:
        return [r for r in self.records if r.kind == "rollback"]

    def live(self, service: str) -> DeployRecord | None:
        """The newest deploy of `service` that no rollback reverted: what runs, per git."""
        found = next((r for r in self.deploys
                      if r.service == service and not self.is_reverted(r.commit)), None)
        if found is None and not self.complete:
            raise MissingHistory(f"which {service} deploy is live")
        return found

    def live_of_source(self, source: str) -> list[DeployRecord]:
        """Not-yet-reverted deploy commits of one source, newest first."""
        return [r for r in self.deploys
                if _same(r.source, source) and not self.is_reverted(r.commit)]

    def rollback_of(self, source: str) -> DeployRecord | None:
        return next((r for r in self.rollbacks if _same(r.source, source)), None)

    def latest_live_source(self) -> str | None:
        newest = next((r for r in self.deploys if not self.is_reverted(r.commit)), None)
        if newest is None and not self.complete:
            raise MissingHistory("which deploy is the latest")
        return newest.source if newest else None

    def newest_record(self) -> DeployRecord | None:
        """The latest deploy or rollback on the branch."""
        return self.records[0] if self.records else None

    def previous_live(self, service: str, gone: set[str]) -> DeployRecord | None:
        """The deploy of `service` that is live once the commits in `gone` are reverted."""
        found = next((r for r in self.deploys if r.service == service and r.commit not in gone
                      and not self.is_reverted(r.commit)), None)
        if found is None and not self.complete:
            raise MissingHistory(f"which {service} deploy goes live after the rollback")
        return found

    def newer_than(self, commit: str) -> list[DeployRecord]:
        """Live deploys recorded after `commit` on this branch."""
        out = []
        for record in self.deploys:
            if record.commit == commit:
                break
            if not self.is_reverted(record.commit):
                out.append(record)
        return out


def _same(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    n = min(len(a), len(b))
    return n >= 7 and a[:n].lower() == b[:n].lower()


def commit_author(config) -> gitrepo.Author:
    """Who gitopsctl's deploy and rollback commits are by (git.author in gitopsctl.yaml)."""
    return gitrepo.Author(config.git.author.name, config.git.author.email)


def deploy_message(config, service: str, source: str | None, image) -> str:
    """A deploy commit's message: the subject people read, the trailers gitopsctl reads back.

    `source` is None for a bump by hand (no app commit behind it); `image` is the
    ImageReference written, shown without its digest in the subject.
    """
    short = source[:7] if source else "manual"
    subject = f"deploy({service}): {short} → {image.without_digest()} {config.git.skip_marker}"
    trailers = [(gitrepo.SOURCE, source)] if source else []
    trailers += [(gitrepo.STAGE, service), (gitrepo.IMAGE, str(image))]
    return gitrepo.format_message(subject.rstrip(), trailers)


def read_state(repo_path: Path, rev: str) -> DeployState:
    tip = gitrepo.resolve_commit(repo_path, rev)
    return DeployState(tip=tip, records=gitrepo.deploy_log(repo_path, tip),
                       complete=not gitrepo.is_shallow(repo_path))


def ensure_not_superseded(repo_path: Path, state: DeployState, source: str,
                          services: list[str] | tuple[str, ...]) -> None:
    """Raise Superseded when a newer source is already deployed for any of `services`.

    Newer means: a different source of which ours is an ancestor. Two unrelated sources
    (say, a revert of history by hand) are not ordered, so neither supersedes the other.
    A live source missing from this clone cannot be ordered either: that is an error,
    because guessing could let an old pipeline overwrite a newer deploy.
    """
    for service in services:
        live = state.live(service)
        if live is None or live.source is None or _same(live.source, source):
            continue
        try:
            ours_is_older = gitrepo.is_ancestor(repo_path, source, live.source)
        except InputError as exc:
            if not state.complete:
                raise MissingHistory(f"whether {source[:7]} is older than the live {service} "
                                     f"source {live.source[:7]}") from None
            raise ExternalError(f"cannot tell whether {source[:7]} is older than the live "
                                f"{service} source {live.source[:7]}: {exc.message}",
                                hint="the checkout needs full history (fetch-depth: 0)") from None
        if ours_is_older:
            raise Superseded(
                f"{service}: source {source[:7]} is older than the deployed "
                f"{live.source[:7]} (commit {live.commit[:7]}); nothing changed",
                hint="a newer pipeline already deployed; this one can stop",
                details={"service": service, "source": source,
                         "deployed_source": live.source, "deploy_commit": live.commit})
