"""Human output on stderr in one voice, machine output (one JSON document) on stdout.

Four verbs, after flux's logger: action, waiting, success, failure. Commands never
print; the CLI and long-running steps report through a Reporter, which the core
receives as a plain callable-bearing object so it never imports rich itself.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from gitopsctl.redact import RedactingFile, redact, redact_obj


@dataclass
class Reporter:
    """Progress and log lines for humans. Safe to use from worker threads."""

    verbose: bool = False
    color: bool = True
    github_annotations: bool = False
    _console: Any = field(default=None, repr=False)

    @property
    def console(self):
        if self._console is None:
            from rich.console import Console

            # every byte of human output passes redaction, whoever prints on this console
            self._console = Console(file=RedactingFile(lambda: sys.stderr), no_color=not self.color,
                                    highlight=False, soft_wrap=True)
        return self._console

    def _line(self, symbol: str, style: str, message: str) -> None:
        from rich.markup import escape

        self.console.print(f"[{style}]{symbol}[/{style}] {escape(redact(message))}")

    def action(self, message: str) -> None:
        self._line("►", "cyan", message)

    def waiting(self, message: str) -> None:
        self._line("◎", "yellow", message)

    def success(self, message: str) -> None:
        self._line("✔", "green", message)

    def failure(self, message: str) -> None:
        self._line("✗", "red", message)
        if self.github_annotations:
            # Gitea and GitHub runners both understand workflow commands.
            sys.stderr.write(f"::error::{redact(message)}\n")

    def warning(self, message: str) -> None:
        self._line("!", "magenta", message)

    def debug(self, message: str) -> None:
        if self.verbose:
            self._line("·", "dim", message)

    @contextmanager
    def status(self, message: str) -> Iterator[Any]:
        """A spinner with elapsed time; yields an object with .update(text)."""
        from rich.status import Status

        start = time.monotonic()
        if not self.console.is_terminal:
            self.waiting(message)
            yield _PlainStatus(self, start)
            return
        with Status(message, console=self.console) as st:
            yield _RichStatus(st, message, start)


class _PlainStatus:
    """Non-TTY progress: prints updates at most every 5 s so CI logs stay readable."""

    def __init__(self, reporter: Reporter, start: float):
        self._reporter = reporter
        self._start = start
        self._last = 0.0

    def update(self, text: str) -> None:
        now = time.monotonic()
        if now - self._last >= 5:
            self._last = now
            self._reporter.waiting(f"{text} ({now - self._start:.0f}s)")


class _RichStatus:
    def __init__(self, status, base: str, start: float):
        self._status = status
        self._base = base
        self._start = start

    def update(self, text: str) -> None:
        self._status.update(f"{text} [dim]({time.monotonic() - self._start:.0f}s)[/dim]")


class NullReporter(Reporter):
    """For library use and tests: swallows everything."""

    def _line(self, symbol: str, style: str, message: str) -> None:
        return None

    @contextmanager
    def status(self, message: str) -> Iterator[Any]:
        yield _NullStatus()


class _NullStatus:
    def update(self, text: str) -> None:
        return None


def color_enabled(no_color_flag: bool) -> bool:
    return not no_color_flag and "NO_COLOR" not in os.environ


def emit_json(document: Any, *, redacted: bool = True) -> None:
    """Write exactly one JSON document to stdout, every secret redacted (see gitopsctl.redact)."""
    if redacted:
        document = redact_obj(document)
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()
