"""gitopsctl history: deploys, rollbacks, suspends and resumes read from git, newest first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gitopsctl.commands import EngineView
from gitopsctl.deploy.history import HistoryResult


def history(ctx, *, service: str | None = None, source: str | None = None,
            since: str | None = None, limit: int | None = None) -> "HistoryView":
    from gitopsctl.deploy.history import history as deploy_history

    return HistoryView(deploy_history(ctx, service=service, source=source, since=since,
                                      limit=limit))


@dataclass
class HistoryView(EngineView):
    """The engine's HistoryResult, rendered as one table."""

    result: HistoryResult

    def render_text(self, console: Any) -> None:
        from rich.table import Table

        res = self.result
        where = "the local clone" if res.offline else res.branch
        table = Table(title=f"history of {where} @ {res.tip[:7]}", title_justify="left")
        for column in ("when", "commit", "kind", "service", "source", "image / reason",
                       "reverted by"):
            table.add_column(column)
        for entry in res.entries:
            detail = entry["image"] or entry["reason"] or ""
            if entry["by"]:
                detail = f"{detail} (by {entry['by']})"
            table.add_row(entry["when"], entry["commit"][:7], entry["kind"],
                          ", ".join(entry["services"]) or "all", (entry["source"] or "-")[:7],
                          detail, (entry["reverted_by"] or "-")[:7])
        console.print(table)
        if not res.entries:
            console.print("no deploys, rollbacks or pauses match", markup=False)
