"""gitopsctl config: validate the config file and show what gitopsctl will use."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any


@dataclass
class ConfigResult:
    document: dict
    source: str
    exit_code: int = 0

    def to_dict(self) -> dict:
        return {"config": self.source, "effective": self.document}

    def render_text(self, console: Any) -> None:
        from ruamel.yaml import YAML

        console.print(f"# {self.source}: valid", markup=False)
        import io

        buf = io.StringIO()
        YAML().dump(self.document, buf)
        console.print(buf.getvalue().rstrip(), markup=False)


@dataclass
class SchemaResult:
    text: str
    exit_code: int = 0

    def to_dict(self) -> dict:
        return json.loads(self.text)

    def render_text(self, console: Any) -> None:
        console.print(self.text.rstrip(), markup=False)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not f.metadata.get("internal")}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def config(ctx, *, schema: bool = False):
    if schema:
        from gitopsctl.schema import render

        return SchemaResult(render())
    cfg = ctx.config
    return ConfigResult(_plain(cfg), str(cfg.path))
