"""gitopsctl status: per service the live source, image and health; recent history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from gitopsctl.commands import EngineView
from gitopsctl.deploy.status import StatusResult


def status(ctx, *, limit: int = 10, health: bool = True) -> "StatusView":
    from gitopsctl.deploy.status import status as deploy_status
    from gitopsctl.targets.factory import production_targets

    return StatusView(deploy_status(ctx, production_targets(ctx), limit=limit, health=health))


@dataclass
class StatusView(EngineView):
    """The engine's StatusResult, rendered as two tables."""

    result: StatusResult

    def render_text(self, console: Any) -> None:
        from rich.table import Table

        res = self.result
        table = Table(title=f"live on {res.branch} @ {res.tip[:7]}", title_justify="left")
        for column in ("service", "target", "source", "image", "deployed", "health"):
            table.add_column(column)
        for svc in res.services:
            health = svc.get("health")
            shown = "-" if health is None else ("healthy" if health["healthy"] else
                                                f"UNHEALTHY: {health['reason']}")
            table.add_row(svc["service"], svc["target"], (svc["source"] or "-")[:7],
                          svc["image"] or "-", _when(svc["deployed_at"]), shown)
        console.print(table)
        if res.suspension:
            pause = res.suspension
            console.print(f"SUSPENDED since {pause['since']} by {pause['by']} ({pause['commit'][:7]}): "
                          f"{pause['reason']}; `gitopsctl resume` lets deploys run again",
                          markup=False)
        for pair in res.consistency:
            console.print(f"consistency {pair['pair']}: {'ok' if pair['ok'] else 'FAILED'}: "
                          f"{pair['message']}", markup=False)
        history = Table(title="recent deploys and rollbacks", title_justify="left")
        for column in ("when", "commit", "kind", "service", "source", "detail"):
            history.add_column(column)
        for item in res.history:
            detail = item.get("image") or item.get("reason") or ""
            if item["kind"] == "deploy" and item.get("reverted"):
                detail += " (reverted)"
            history.add_row(_when(item["timestamp"]), item["commit"][:7], item["kind"],
                            item.get("service") or "all", (item.get("source") or "-")[:7], detail)
        console.print(history)
        if res.unhealthy:
            console.print(f"UNHEALTHY: {', '.join(res.unhealthy)} (exit 1)", markup=False)
        if res.inconsistent:
            console.print(f"INCONSISTENT: {', '.join(res.inconsistent)} (exit 1)", markup=False)


def _when(ts: int | None) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
