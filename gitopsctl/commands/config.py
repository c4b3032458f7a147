"""gitopsctl config: validate the config file and show what gitopsctl will use."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass
class ConfigResult:
    document: dict
    source: str
    version: int
    exit_code: int = 0

    def to_dict(self) -> dict:
        return {"config": self.source, "file_version": self.version, "effective": self.document}

    def render_text(self, console: Any) -> None:
        from gitopsctl.configdump import to_yaml

        console.print(f"# {self.source}: valid (version {self.version} file, shown as version 2)",
                      markup=False)
        console.print(to_yaml(self.document).rstrip(), markup=False)


@dataclass
class MigrateResult:
    text: str
    source: str
    version: int
    exit_code: int = 0

    def to_dict(self) -> dict:
        return {"config": self.source, "file_version": self.version, "migrated": self.text}

    def render_text(self, console: Any) -> None:
        console.print(self.text.rstrip(), markup=False)


@dataclass
class SchemaResult:
    text: str
    exit_code: int = 0

    def to_dict(self) -> dict:
        return json.loads(self.text)

    def render_text(self, console: Any) -> None:
        console.print(self.text.rstrip(), markup=False)


def config(ctx, *, schema: bool = False, migrate: bool = False):
    if schema:
        from gitopsctl.schema import render

        return SchemaResult(render())
    from gitopsctl import configdump

    cfg = ctx.config
    if migrate:
        header = (f"# {cfg.path.name} in the version 2 format (migrated from version "
                  f"{cfg.source_version} by `gitopsctl config --migrate`); defaults are left out,\n"
                  "# `gitopsctl config --schema` lists every key, and so does\n"
                  "# docs/configuration.md in the gitopsctl repository.\n")
        return MigrateResult(configdump.to_yaml(configdump.minimal(cfg), header), str(cfg.path),
                             cfg.source_version)
    return ConfigResult(configdump.effective(cfg), str(cfg.path), cfg.source_version)
