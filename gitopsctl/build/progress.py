"""Per-layer push progress for the reporter."""

from __future__ import annotations

import threading
from typing import Any


class PushProgress:
    """Per-layer push progress: a rich progress display on a terminal, else quiet lines."""

    def __init__(self, reporter, live):
        self._reporter = reporter
        self._live = live
        self._tasks: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def create(cls, reporter) -> "PushProgress":
        from gitopsctl.console import NullReporter

        live = None
        console = None if isinstance(reporter, NullReporter) else reporter.console
        if console is not None and console.is_terminal:
            from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                                       TimeElapsedColumn)

            live = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                            TimeElapsedColumn(), console=console, transient=True)
            live.start()
        return cls(reporter, live)

    def update(self, service: str, layer: str, status: str, current, total) -> None:
        key = (service, layer)
        with self._lock:
            if self._live is not None:
                task = self._tasks.get(key)
                description = f"{service} {layer[:12]} {status}"
                if task is None:
                    task = self._live.add_task(description, total=total or None)
                    self._tasks[key] = task
                done = status in ("Pushed", "Layer already exists", "Mounted from")
                self._live.update(task, description=description,
                                  completed=(total if done and total else current or 0),
                                  total=total or None)
                if done:
                    self._live.update(task, completed=1, total=1)
            elif status in ("Pushed", "Layer already exists") or status.startswith("Mounted"):
                self._reporter.debug(f"{service}: layer {layer[:12]} {status.lower()}")

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
