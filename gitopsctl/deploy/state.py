"""What git says is deployed: live deploys, rollbacks, and who supersedes whom.

Everything here is derived from the trailers in `git log` of the remote branch, so a
crashed or cancelled run can always be resumed from the same facts.
"""

from __future__ import annotations

from pathlib import Path

from gitopsctl import repo as gitrepo
from gitopsctl.errors import ExternalError, InputError, Superseded
from gitopsctl.repo import DeployRecord, MissingHistory


class DeployState:
    """Deploy, rollback and pause records of one branch tip, read newest first on demand.

    Each query reads only as far back as its answer needs, in pages of `git log -n`
    (16 records, then four times more each page), so its cost follows how far back the
    answer is, not the history's length: a rollback always comes after what it reverts,
    so once a deploy is reached every rollback that could revert it is known. A command
    builds one state and keeps it; `advance` follows the tip when a push moved it.
    """

    FIRST_PAGE = 16  # what status and rollback ask of a busy history: about a dozen records

    def __init__(self, root: Path | str | None, tip: str, *, complete: bool | None = None,
                 records: list[DeployRecord] | None = None, page: int = FIRST_PAGE):
        self.root = root
        self.tip = tip
        self.reverted: set[str] = set()
        self._loaded: list[DeployRecord] = []      # every kind, newest first
        self._commits: set[str] = set()
        self._parents: set[str] = set()             # first parents of the records read
        self._cursor: str | None = tip              # where the next page starts; None: history read
        self._page = page
        self._bounded: set[str] = set()             # sources whose later records are all read
        self._complete = complete                   # None: not asked yet (is_shallow)
        if records is not None:  # a history read elsewhere (tests, the old full scan)
            self._take(records)
            self._cursor = None

    # ------------------------------------------------------------ reading

    def _take(self, records: list[DeployRecord], parents=None) -> None:
        self._parents.update(p for p in (parents or {}).values() if p)
        for record in records:
            self._loaded.append(record)
            self._commits.add(record.commit)
            if record.kind == "rollback":
                self.reverted.update(record.reverts)

    def _read_page(self) -> bool:
        """One more page from the cursor; False once the history is read whole."""
        if self._cursor is None:
            return False
        page = gitrepo.log_page(self.root, self._cursor, count=self._page)
        self._take(page.records, page.parents)
        self._cursor = page.first_parent if page.commits >= self._page else None
        self._page *= 4
        return True

    def _records(self):
        """Every record (pauses too), newest first, reading pages as the caller goes on."""
        index = 0
        while True:
            while index < len(self._loaded):
                yield self._loaded[index]
                index += 1
            if not self._read_page():
                return

    def iter_deploys(self):
        """Deploy records newest first, read as far as the caller goes."""
        return (r for r in self._records() if r.kind == "deploy")

    def _read_after(self, source: str) -> None:
        """Read every record newer than `source`: one deploys or rolls back `source` only
        after it exists, so none is an ancestor of it (`git log SOURCE..`)."""
        if self._cursor is None or source in self._bounded:
            return
        if source == self.tip or source in self._parents:
            # `source` is on the chain next to a record read: everything above it is read
            return
        if not gitrepo.is_full_sha(source):
            while self._read_page():
                pass
            return
        page = gitrepo.log_page(self.root, self._cursor, exclude=[source])
        if page.missing:  # `source` is not in this clone: only the whole history tells
            while self._read_page():
                pass
            return
        self._take(page.records, page.parents)
        if page.commits:
            self._cursor = page.first_parent
        self._bounded.add(source)

    def advance(self, tip: str) -> "DeployState":
        """The state at `tip`, a descendant of this one's on the first-parent chain (the
        branch moved under a push): the records in between are read, nothing else."""
        if tip == self.tip:
            return self
        page = gitrepo.log_page(self.root, tip, exclude=[self.tip], every_commit=True)
        if page.commits == 0 or page.first_parent != self.tip:
            # not a fast-forward of this chain: start over
            return DeployState(self.root, tip, complete=self._complete, page=self.FIRST_PAGE)
        later = DeployState(self.root, tip, complete=self._complete)
        later._take(page.records, page.parents)
        later._take(self._loaded)
        later._parents |= self._parents
        later._cursor, later._page = self._cursor, self._page
        later._bounded = set(self._bounded)
        return later

    @property
    def complete(self) -> bool:
        """False in a shallow clone: what is not found may be in history that is not here."""
        if self._complete is None:
            self._complete = not gitrepo.is_shallow(self.root)
        return self._complete

    # ------------------------------------------------------------ queries

    def is_reverted(self, commit: str) -> bool:
        """Whether a rollback reverted `commit`; reads back as far as `commit`."""
        if commit not in self._commits:
            next((r for r in self._records() if r.commit == commit), None)
        return self._reverted_now(commit)

    def _reverted_now(self, commit: str) -> bool:
        return any(commit.startswith(p) for p in self.reverted if len(p) >= 7)

    @property
    def records(self) -> list[DeployRecord]:
        """Every deploy and rollback on the branch (reads the whole history)."""
        return [r for r in self._records() if r.kind in ("deploy", "rollback")]

    def recent(self, limit: int) -> list[DeployRecord]:
        """The newest `limit` deploys and rollbacks."""
        out: list[DeployRecord] = []
        for record in self._records():
            if len(out) >= limit:
                break
            if record.kind in ("deploy", "rollback"):
                out.append(record)
        return out

    def recent_until(self, commit: str) -> list[DeployRecord]:
        """The deploys and rollbacks newer than `commit`, newest first."""
        out: list[DeployRecord] = []
        for record in self._records():
            if record.commit == commit:
                break
            if record.kind in ("deploy", "rollback"):
                out.append(record)
        return out

    def live(self, service: str) -> DeployRecord | None:
        """The newest deploy of `service` that no rollback reverted: what runs, per git."""
        found = next((r for r in self.iter_deploys()
                      if r.service == service and not self._reverted_now(r.commit)), None)
        if found is None and not self.complete:
            raise MissingHistory(f"which {service} deploy is live")
        return found

    def live_of_source(self, source: str) -> list[DeployRecord]:
        """Not-yet-reverted deploy commits of one source, newest first."""
        self._read_after(source)
        return [r for r in self._loaded if r.kind == "deploy" and _same(r.source, source)
                and not self._reverted_now(r.commit)]

    def rollback_of(self, source: str) -> DeployRecord | None:
        self._read_after(source)
        return next((r for r in self._loaded if r.kind == "rollback" and _same(r.source, source)),
                    None)

    def latest_live_source(self) -> str | None:
        newest = next((r for r in self.iter_deploys() if not self._reverted_now(r.commit)), None)
        if newest is None and not self.complete:
            raise MissingHistory("which deploy is the latest")
        return newest.source if newest else None

    def newest_record(self) -> DeployRecord | None:
        """The latest deploy or rollback on the branch."""
        return next((r for r in self._records() if r.kind in ("deploy", "rollback")), None)

    def previous_live(self, service: str, gone: set[str]) -> DeployRecord | None:
        """The deploy of `service` that is live once the commits in `gone` are reverted."""
        found = next((r for r in self.iter_deploys() if r.service == service and r.commit not in gone
                      and not self._reverted_now(r.commit)), None)
        if found is None and not self.complete:
            raise MissingHistory(f"which {service} deploy goes live after the rollback")
        return found

    def newer_than(self, commit: str) -> list[DeployRecord]:
        """Live deploys recorded after `commit` on this branch."""
        out = []
        for record in self.iter_deploys():
            if record.commit == commit:
                break
            out.append(record)
        return [r for r in out if not self._reverted_now(r.commit)]

    def pause(self) -> DeployRecord | None:
        """The suspend record standing at the tip, or None when deploys run.

        The newest suspend or resume decides; a deploy or rollback that recorded the pause
        state at its parent (the Gitopsctl-Suspension trailer) decides as well, so the walk
        stops at the newest record written since that trailer exists."""
        for record in self._records():
            if record.kind == "suspend":
                return record
            if record.kind == "resume":
                return None
            said = record.trailers.get(gitrepo.SUSPENSION)
            if said:
                return None if said[0] == "none" else self._pause_record(said[0])
        return None

    def _pause_record(self, commit: str) -> DeployRecord | None:
        return next((r for r in self._records() if r.commit == commit and r.kind == "suspend"),
                    None)

    def suspension_trailer(self) -> tuple[str, str]:
        """The pause state at the tip, for a record written on it (see `pause`)."""
        standing = self.pause()
        return (gitrepo.SUSPENSION, standing.commit if standing else "none")


def _same(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    n = min(len(a), len(b))
    return n >= 7 and a[:n].lower() == b[:n].lower()


def commit_author(config) -> gitrepo.Author:
    """Who gitopsctl's deploy and rollback commits are by (git.author in gitopsctl.yaml)."""
    return gitrepo.Author(config.git.author.name, config.git.author.email)


def deploy_message(config, service: str, source: str | None, image,
                   pause: tuple[str, str] | None = None) -> str:
    """A deploy commit's message: the subject people read, the trailers gitopsctl reads back.

    `source` is None for a bump by hand (no app commit behind it); `image` is the
    ImageReference written, shown without its digest in the subject. `pause`: the
    DeployState.suspension_trailer() of the tip the commit is built on.
    """
    short = source[:7] if source else "manual"
    subject = f"deploy({service}): {short} → {image.without_digest()} {config.git.skip_marker}"
    trailers = [(gitrepo.SOURCE, source)] if source else []
    trailers += [(gitrepo.STAGE, service), (gitrepo.IMAGE, str(image))]
    trailers += [pause] if pause else []
    return gitrepo.format_message(subject.rstrip(), trailers)


def read_state(repo_path: Path, rev: str) -> DeployState:
    """The deploy state at `rev`; nothing is read from the log until a query asks."""
    return DeployState(repo_path, gitrepo.resolve_commit(repo_path, rev))


def full_scan_state(repo_path: Path, rev: str) -> DeployState:
    """The state from one `git log` of the whole history (what read_state did before it
    read on demand): the reference the lazy state is tested and measured against."""
    tip = gitrepo.resolve_commit(repo_path, rev)
    return DeployState(repo_path, tip, complete=not gitrepo.is_shallow(repo_path),
                       records=gitrepo.deploy_log(repo_path, tip, pauses=True))


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
