"""Status: per service the live source, image and health; recent history.

Everything but health comes from the trailers in `git log` of the remote branch.
Exit 1 when a service's health was probed and found unhealthy, or a consistency pair
(asked once, with health) does not reach the version git says is live; without health
nothing is judged and the exit is 0. The command renders the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gitopsctl import repo as gitrepo
from gitopsctl.deploy import suspension
from gitopsctl.deploy.converge import check_once
from gitopsctl.deploy.state import read_state
from gitopsctl.errors import EXIT_FINDINGS, EXIT_OK, GitopsctlError


@dataclass
class StatusResult:
    branch: str
    tip: str
    services: list[dict] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    consistency: list[dict] = field(default_factory=list)
    suspension: dict | None = None   # Suspension.to_dict() while deploys are paused
    exit_code: int = EXIT_OK

    @property
    def unhealthy(self) -> list[str]:
        return [s["service"] for s in self.services if s.get("health") and not s["health"]["healthy"]]

    @property
    def inconsistent(self) -> list[str]:
        return [p["pair"] for p in self.consistency if not p["ok"]]

    def to_dict(self) -> dict:
        probed = any(s.get("health") for s in self.services)
        return {"branch": self.branch, "tip": self.tip,
                "healthy": not self.unhealthy if probed else None, "unhealthy": self.unhealthy,
                "consistent": not self.inconsistent if self.consistency else None,
                "inconsistent": self.inconsistent, "services": self.services,
                "consistency": self.consistency, "history": self.history,
                "suspended": self.suspension is not None, "suspension": self.suspension}


def status(ctx, targets: Any, *, limit: int = 10, health: bool = True) -> StatusResult:
    config = ctx.config
    root = ctx.repo
    if health:
        targets.prepare(connect=False)  # the clients load while git fetches and reads
    try:
        gitrepo.fetch(root, config.git.remote, config.git.branch)
        ref = gitrepo.remote_ref(config)
    except GitopsctlError as exc:  # offline at 2 a.m. still shows what the clone knows
        ctx.reporter.warning(f"cannot fetch, showing the local clone: {exc.message}")
        ref = "HEAD"
    state = read_state(root, ref)
    result = StatusResult(branch=config.git.branch, tip=state.tip)
    standing = suspension.current(root, state.tip, state)
    if standing is not None:
        result.suspension = standing.to_dict()
        # Not a finding (exit 0): a pause is a decision, but nobody may miss it.
        ctx.reporter.warning(f"{standing.describe()}; `gitopsctl resume` lets them run again")
    for service in config.stage.order:
        live = state.live(service)
        entry = {"service": service, "target": targets.target_name(service),
                 "source": live.source if live else None,
                 "image": live.image if live else _image_in_git(root, ref, config, service),
                 "commit": live.commit if live else None,
                 "deployed_at": live.timestamp if live else None, "health": None}
        if health:
            entry["health"] = check_once(targets, service).to_dict()
        result.services.append(entry)
    if health:
        result.consistency = _agree(ctx, state)
    for record in state.recent(limit):
        item = record.to_dict()
        item["reverted"] = record.kind == "deploy" and state.is_reverted(record.commit)
        result.history.append(item)
    result.exit_code = EXIT_FINDINGS if result.unhealthy or result.inconsistent else EXIT_OK
    return result


def _agree(ctx, state) -> list[dict]:
    """One look at every consistency pair, against the sources git says are live."""
    from gitopsctl.deploy import consistency

    config = ctx.config
    return [r.to_dict() for r in consistency.judge_live(config, state, config.consistency, once=True)]


def _image_in_git(root, ref: str, config, service: str) -> str | None:
    """The image a service's setter marker holds at `ref`, for services that no gitopsctl
    deploy commit describes yet (a fresh homelab, or one rolled back to its first state)."""
    from gitopsctl import setters

    svc = config.service(service)
    try:
        entries = [e for e in gitrepo.tree_files(root, ref, list(svc.paths))
                   if not e.is_link and setters.tree_selected(e.path, svc.paths)]
        blobs = gitrepo.read_blobs(root, [e.blob for e in entries])
    except GitopsctlError:  # offline clone without that ref: nothing to show
        return None
    for entry in entries:
        name, text = entry.path, blobs[entry.blob].decode("utf-8", "replace")
        if "$imagepolicy" not in text:
            continue
        try:
            markers = setters.scan_text(text, name).markers
        except GitopsctlError:  # `check` reports broken files; status just looks past them
            continue
        for marker in markers:
            if marker.policy == svc.policy and marker.field == "image":
                return f"{marker.value} (in git; not deployed by gitopsctl)"
    return None
