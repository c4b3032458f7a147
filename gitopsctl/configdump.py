"""A loaded config back to YAML data: the effective config, or the file that says it.

`effective` keeps every value (what `gitopsctl config` shows); `minimal` leaves out what
equals its default, so a version 1 file migrates to the short version 2 file a person
would have written.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gitopsctl.config import CURRENT_VERSION, Config, HealthCheck, Stage, yaml_key


def effective(config: Config) -> dict:
    return _plain(config, minimal=False)


def minimal(config: Config) -> dict:
    data = _plain(config, minimal=True)
    data["version"] = CURRENT_VERSION
    ordered = {"version": CURRENT_VERSION}
    ordered.update((k, v) for k, v in data.items() if k != "version")
    return ordered


def _plain(value: Any, *, minimal: bool) -> Any:
    if dataclasses.is_dataclass(value):
        out = {}
        for f in dataclasses.fields(value):
            if f.metadata.get("internal"):
                continue
            item = getattr(value, f.name)
            if minimal and f.name != "kind" and _is_default(f, item):
                continue
            if isinstance(value, HealthCheck) and item is None:
                continue  # a check is the one kind it names
            if isinstance(value, Stage) and f.name == "groups":
                # A group of one is written as the bare name, as a person would.
                out[yaml_key(f)] = [g[0] if len(g) == 1 else list(g) for g in item]
                continue
            out[yaml_key(f)] = _plain(item, minimal=minimal)
        return out
    if isinstance(value, dict):
        return {k: _plain(v, minimal=minimal) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v, minimal=minimal) for v in value]
    return value


def _is_default(f: dataclasses.Field, value: Any) -> bool:
    if f.default is not dataclasses.MISSING:
        return value == f.default
    if f.default_factory is not dataclasses.MISSING:
        return value == f.default_factory()
    return False


def to_yaml(data: dict, header: str = "") -> str:
    import io

    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.default_flow_style = False
    buf = io.StringIO()
    yaml.dump(data, buf)
    return header + buf.getvalue()
