"""gitopsctl status: per target the live source, image and health; recent history.

Everything but health comes from the trailers in `git log` of the remote branch.
Exit 1 when a target's health was probed and found unhealthy (so `ok` is false too);
with --no-health nothing is judged and the exit is 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from gitopsctl import repo as gitrepo
from gitopsctl.deploy.converge import check_once
from gitopsctl.deploys import read_state
from gitopsctl.deploys_git import remote_ref
from gitopsctl.errors import EXIT_FINDINGS, EXIT_OK, GitopsctlError


@dataclass
class StatusResult:
    branch: str
    tip: str
    services: list[dict] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    exit_code: int = EXIT_OK

    @property
    def unhealthy(self) -> list[str]:
        return [s["service"] for s in self.services if s.get("health") and not s["health"]["healthy"]]

    def to_dict(self) -> dict:
        probed = any(s.get("health") for s in self.services)
        return {"branch": self.branch, "tip": self.tip,
                "healthy": not self.unhealthy if probed else None, "unhealthy": self.unhealthy,
                "services": self.services, "history": self.history}

    def render_text(self, console: Any) -> None:
        from rich.table import Table

        table = Table(title=f"live on {self.branch} @ {self.tip[:7]}", title_justify="left")
        for column in ("service", "target", "source", "image", "deployed", "health"):
            table.add_column(column)
        for svc in self.services:
            health = svc.get("health")
            shown = "-" if health is None else ("healthy" if health["healthy"] else
                                                f"UNHEALTHY: {health['reason']}")
            table.add_row(svc["service"], svc["target"], (svc["source"] or "-")[:7],
                          svc["image"] or "-", _when(svc["deployed_at"]), shown)
        console.print(table)
        history = Table(title="recent deploys and rollbacks", title_justify="left")
        for column in ("when", "commit", "kind", "service", "source", "detail"):
            history.add_column(column)
        for item in self.history:
            detail = item.get("image") or item.get("reason") or ""
            if item["kind"] == "deploy" and item.get("reverted"):
                detail += " (reverted)"
            history.add_row(_when(item["timestamp"]), item["commit"][:7], item["kind"],
                            item.get("service") or "both", (item.get("source") or "-")[:7], detail)
        console.print(history)
        if self.unhealthy:
            console.print(f"UNHEALTHY: {', '.join(self.unhealthy)} (exit 1)", markup=False)


def _when(ts: int | None) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def status(ctx, *, limit: int = 10, health: bool = True) -> StatusResult:
    config = ctx.config
    root = ctx.repo
    try:
        gitrepo.fetch(root, config.git.remote, config.git.branch)
        ref = remote_ref(config)
    except GitopsctlError as exc:  # offline at 2 a.m. still shows what the clone knows
        ctx.reporter.warning(f"cannot fetch, showing the local clone: {exc.message}")
        ref = "HEAD"
    state = read_state(root, ref)
    result = StatusResult(branch=config.git.branch, tip=state.tip)
    for service in config.stage.order:
        live = state.live(service)
        entry = {"service": service, "target": config.service(service).target,
                 "source": live.source if live else None,
                 "image": live.image if live else _image_in_git(root, ref, config, service),
                 "commit": live.commit if live else None,
                 "deployed_at": live.timestamp if live else None, "health": None}
        if health:
            entry["health"] = check_once(ctx, service).to_dict()
        result.services.append(entry)
    for record in state.records[:limit]:
        item = record.to_dict()
        item["reverted"] = record.kind == "deploy" and state.is_reverted(record.commit)
        result.history.append(item)
    result.exit_code = EXIT_FINDINGS if result.unhealthy else EXIT_OK
    return result


def _image_in_git(root, ref: str, config, service: str) -> str | None:
    """The image a service's setter marker holds at `ref`, for services that no gitopsctl
    deploy commit describes yet (a fresh homelab, or one rolled back to its first state)."""
    from gitopsctl import setters

    repo = gitrepo.open_repo(root)
    svc = config.service(service)
    try:
        names = repo.git.ls_tree("-r", "--name-only", ref, "--", *svc.paths).split("\n")
    except Exception:
        return None
    for name in names:
        if not setters.tree_selected(name, svc.paths):
            continue
        try:
            text = repo.git.show(f"{ref}:{name}")
        except Exception:
            continue
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
