"""One module per subcommand; each exposes a function of the command's name.

A command takes a Context plus its options and returns a Result; it never prints
its result itself (the CLI renders text or JSON) but may report progress through
ctx.reporter.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol

from gitopsctl.console import NullReporter, Reporter


@dataclass
class Context:
    repo: Path
    config_path: Path
    output: str = "text"
    reporter: Reporter = field(default_factory=NullReporter)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    _config: Any = field(default=None, repr=False)

    @property
    def config(self):
        """The loaded config; loaded on first use so commands that need none stay fast."""
        if self._config is None:
            from gitopsctl import config as config_mod

            self._config = config_mod.load(self.config_path, root=self.repo, environ=self.environ)
        return self._config

    @property
    def json(self) -> bool:
        return self.output == "json"


class Result(Protocol):
    exit_code: int

    def to_dict(self) -> dict: ...

    def render_text(self, console: Any) -> None: ...


@dataclass
class Message:
    """The simplest result: a line of text and a payload."""

    text: str
    data: dict = field(default_factory=dict)
    exit_code: int = 0

    def to_dict(self) -> dict:
        return {"message": self.text, **self.data}

    def render_text(self, console: Any) -> None:
        console.print(self.text)


@dataclass
class EngineView:
    """An engine result (plain data) with the command's own rendering: the exit code and
    the JSON are the result's; subclasses draw the text."""

    result: Any

    @property
    def exit_code(self) -> int:
        return self.result.exit_code

    def to_dict(self) -> dict:
        return self.result.to_dict()
