"""Reading gitopsctl.yaml: bounded YAML, environment overrides, the dataclass-driven loader
and the cross-section checks; every error names file:line:column, the key and a fix.

The model it fills is gitopsctl/config.py; version 1 files go through gitopsctl/config_v1.py.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from pathlib import Path
from typing import Any

from gitopsctl.config import (_NAME_RE, CURRENT_VERSION, ENV_PREFIX, Config, find_repo_root,
                              out_of_range, parse_seconds, variant_kind, yaml_key)
from gitopsctl.errors import ConfigError, Location


def load_file(path: Path | str, *, root: Path | None = None,
         environ: typing.Mapping[str, str] | None = None) -> Config:
    """Read, validate and freeze a config file. Raises ConfigError, never anything else."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    from gitopsctl import yamlsafe
    from gitopsctl.errors import InputError

    path = Path(path)
    try:
        text = yamlsafe.read_text(path, str(path))  # bounded: size, control characters
        yamlsafe.guard_text(text, str(path))        # nesting depth, alias bombs
    except yamlsafe.HostileInput as exc:
        raise yamlsafe.HostileConfig(exc.message, hint=exc.hint, location=exc.location) from None
    except InputError as exc:
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist",
                              hint="write one with `gitopsctl init`, or pass --config PATH "
                                   "(or set GITOPSCTL_CONFIG)") from None
        raise ConfigError(exc.message, location=exc.location, hint=exc.hint) from None
    yaml = YAML(typ="rt")
    try:
        data = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(str(path), mark.line + 1, mark.column + 1) if mark else Location(str(path))
        raise ConfigError(f"not valid YAML: {exc.problem or exc.context}", location=loc,
                          hint="check indentation and quoting around this position") from None
    except YAMLError as exc:  # unmarked: name only the type, the text may quote a secret
        raise ConfigError(f"not valid YAML ({type(exc).__name__})",
                          location=Location(str(path))) from None
    if data is None:
        data = {}
    loader = _Loader(str(path))
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of keys", location=Location(str(path), 1, 1),
                          hint="start with `registry:`, `services:` and `targets:` "
                               "(`gitopsctl config --schema` lists every key)")
    data = _apply_env_overrides(data, environ if environ is not None else os.environ, loader)
    version = data.get("version", 1)
    if version == 1 and not isinstance(version, bool):
        config = _load_v1(data, loader)
    elif version == CURRENT_VERSION and not isinstance(version, bool):
        config = loader.build(Config, data, "", None)
        if not config.stage.groups:
            config = dataclasses.replace(config, stage=dataclasses.replace(
                config.stage, groups=tuple((name,) for name in config.services)))
        _cross_check(config, data, loader)
    else:
        loader.fail(data, "version", "version", f"1 or {CURRENT_VERSION}", CURRENT_VERSION, version)
    return dataclasses.replace(config, path=path.resolve(),
                               root=(root or find_repo_root(path.resolve().parent) or path.resolve().parent))


def _load_v1(data: dict, loader: "_Loader") -> Config:
    from gitopsctl import config_v1

    try:
        old = loader.build(config_v1.ConfigV1, data, "", None)
    except ConfigError as exc:
        if "version" not in data and config_v1.looks_like_v2(data):
            exc.hint = (f"{exc.hint}; " if exc.hint else "") + \
                "this reads like a version 2 file: add `version: 2` at the top"
        raise
    config_v1.cross_check(old, data, loader)
    return config_v1.upgrade(old)


def _apply_env_overrides(data: dict, environ: typing.Mapping[str, str], loader: "_Loader") -> dict:
    """GITOPSCTL_STAGE__DELAY=0 sets stage.delay; the value is parsed as YAML."""
    reserved = {"CONFIG", "REPO", "OUTPUT", "VERBOSE", "NO_COLOR", "KNOWN_HOSTS", "SSH_KEY_FILE"}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        name = key[len(ENV_PREFIX):]
        if name in reserved:
            continue
        parts = [p.lower() for p in name.split("__")]
        node = data
        for i, part in enumerate(parts[:-1]):
            if isinstance(node, dict) and part not in node and part.replace("_", "-") in node:
                # Environment names cannot hold `-`: BACKEND_VM stands for `backend-vm`.
                part = parts[i] = part.replace("_", "-")
            nxt = node.get(part) if isinstance(node, dict) else None
            if not isinstance(nxt, dict):
                from ruamel.yaml.comments import CommentedMap

                nxt = CommentedMap()
                node[part] = nxt
            node = nxt
        value = _env_value(key, raw) if raw.strip() else raw
        node[parts[-1]] = value
        loader.from_env[(id(node), parts[-1])] = key
    return data


def _env_value(key: str, raw: str) -> Any:
    """An override's value, parsed as YAML with the same bounds as a config file."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    from gitopsctl.yamlsafe import HostileInput, guard_text

    try:
        guard_text(raw, f"environment variable {key}")
        return YAML(typ="safe").load(raw)
    except HostileInput as exc:
        raise ConfigError(str(exc), hint=exc.hint) from None
    except YAMLError as exc:
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"environment variable {key}: not a YAML value ({problem})",
                          hint=f"quote it or give a plain value, e.g. {key}=60s") from None


def _position(node: Any, key: Any, *, value: bool = False) -> tuple[int, int] | None:
    lc = getattr(node, "lc", None)
    if lc is None:
        return None
    try:
        if isinstance(node, dict):
            line, col = lc.value(key) if value else lc.key(key)
        else:
            line, col = lc.item(key)
    except (KeyError, TypeError, IndexError, AttributeError):
        return None
    return line + 1, col + 1


class _Loader:
    def __init__(self, filename: str):
        self.filename = filename
        self.from_env: dict[tuple[int, Any], str] = {}

    def where(self, parent: Any, key: Any, *, value: bool = True) -> Location:
        env_name = self.from_env.get((id(parent), key))
        if env_name:
            return Location(f"environment variable {env_name}")
        pos = _position(parent, key, value=value) if parent is not None else None
        if pos is None and parent is not None:
            pos = _position(parent, key, value=False)
        if pos is None:
            line = getattr(getattr(parent, "lc", None), "line", None)
            pos = (line + 1, 1) if line is not None else (1, 1)
        return Location(self.filename, *pos)

    def fail(self, parent: Any, key: Any, dotted: str, expected: str, example: Any,
             got: Any = None, *, value: bool = True) -> typing.NoReturn:
        shown = "" if got is None else f", got {_describe(got)}"
        hint = f"example: {dotted.split('.')[-1]}: {_yaml_example(example)}" if example is not None else None
        raise ConfigError(f"{dotted}: expected {expected}{shown}",
                          location=self.where(parent, key, value=value), hint=hint,
                          details={"key": dotted, "expected": expected})

    def build(self, cls: type, data: Any, prefix: str, parent: Any, key: Any = None):
        hints = typing.get_type_hints(cls)
        if not isinstance(data, dict):
            self.fail(parent, key, prefix or "(top level)", "a mapping", None, data)
        fields = {yaml_key(f): f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
        for k in data:
            if k not in fields:
                close = difflib.get_close_matches(str(k), list(fields), n=1)
                dotted = f"{prefix}.{k}" if prefix else str(k)
                hint = f"did you mean `{close[0]}`?" if close else f"known keys: {', '.join(fields)}"
                raise ConfigError(f"{dotted}: unknown key", location=self.where(data, k, value=False),
                                  hint=hint, details={"key": dotted})
        kwargs = {}
        for name, f in fields.items():
            dotted = f"{prefix}.{name}" if prefix else name
            if name not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    where = self.where(parent, key, value=False) if parent is not None else Location(self.filename, 1, 1)
                    example = f.metadata.get("example")
                    raise ConfigError(f"{dotted}: required key is missing", location=where,
                                      hint=f"add `{name}: {_yaml_example(example)}`" if example is not None
                                      else f"add a `{name}:` section (`gitopsctl config --schema` lists its keys)",
                                      details={"key": dotted})
                continue
            kwargs[f.name] = self.convert(hints[f.name], data[name], dotted, data, name, f.metadata)
        built = cls(**kwargs)
        check = getattr(cls, "_check", None)
        problem = check(built) if check is not None else None
        if problem:
            expected, hint = problem
            raise ConfigError(f"{prefix}: expected {expected}", hint=hint,
                              location=self.where(parent, key, value=False), details={"key": prefix})
        return built

    def convert(self, tp: Any, value: Any, dotted: str, parent: Any, key: Any, md: dict):
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        example = md.get("example")
        if origin in (typing.Union, types.UnionType):
            inner = [a for a in args if a is not type(None)]
            if value is None:
                return None
            if len(inner) > 1:
                return self._variant(inner, value, dotted, parent, key)
            return self.convert(inner[0], value, dotted, parent, key, md)
        if dataclasses.is_dataclass(tp):
            return self.build(tp, value, dotted, parent, key)
        if origin is tuple:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list):
                self.fail(parent, key, dotted, "a list of strings", example, value)
            out = []
            for i, item in enumerate(value):
                out.append(self.convert(args[0], item, f"{dotted}[{i}]", value, i, {}))
            return tuple(out)
        if origin is dict:
            if not isinstance(value, dict):
                self.fail(parent, key, dotted, "a mapping of names", example, value)
            out = {}
            for k, v in value.items():
                if not isinstance(k, str) or not re.match(_NAME_RE, k):
                    self.fail(value, k, f"{dotted}.{k}", "a lowercase name like `frontend`",
                              "frontend", k, value=False)
                out[k] = self.convert(args[1], v, f"{dotted}.{k}", value, k, md)
            return out
        if md.get("duration"):
            return self._duration(value, dotted, parent, key, md)
        if tp is bool:
            if not isinstance(value, bool):
                self.fail(parent, key, dotted, "true or false", example, value)
            return value
        if tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                self.fail(parent, key, dotted, "a whole number", example, value)
            self._range(value, dotted, parent, key, md)
            self._choices(value, dotted, parent, key, md)
            return value
        if tp is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.fail(parent, key, dotted, "a number", example, value)
            self._range(value, dotted, parent, key, md)
            return float(value)
        if tp is str:
            if not isinstance(value, str) or not value.strip():
                self.fail(parent, key, dotted, "a non-empty string", example, value)
            pattern = md.get("pattern")
            if pattern and not re.match(pattern, value):
                self.fail(parent, key, dotted, md.get("expected") or f"a string matching {pattern}",
                          example, None if md.get("conceal") else value)
            self._choices(value, dotted, parent, key, md)
            return str(value)
        raise TypeError(f"unsupported config type {tp!r}")  # a bug in this module, not user input

    def _variant(self, classes: list, value: Any, dotted: str, parent: Any, key: Any):
        """One of several sections, told apart by their `kind:` (like a Kubernetes object)."""
        kinds = {variant_kind(c): c for c in classes}
        if not isinstance(value, dict):
            self.fail(parent, key, dotted, "a mapping", None, value)
        if "kind" not in value:
            raise ConfigError(f"{dotted}.kind: required key is missing",
                              location=self.where(parent, key, value=False),
                              hint=f"add `kind:` with one of: {', '.join(kinds)}",
                              details={"key": f"{dotted}.kind"})
        chosen = kinds.get(value["kind"])
        if chosen is None:
            self.fail(value, "kind", f"{dotted}.kind", "one of " + ", ".join(kinds),
                      next(iter(kinds)), value["kind"])
        return self.build(chosen, value, dotted, parent, key)

    def _duration(self, value, dotted, parent, key, md) -> float:
        seconds = parse_seconds(value)
        if seconds is None:
            self.fail(parent, key, dotted, "a duration: seconds as a number, or like 90s, 5m, 1h",
                      md.get("example"), value)
        self._range(seconds, dotted, parent, key, md, unit="s")
        return seconds

    def _range(self, value, dotted, parent, key, md, unit: str = "") -> None:
        expected = out_of_range(value, md, unit)
        if expected:
            self.fail(parent, key, dotted, expected, md.get("example"), value)

    def _choices(self, value, dotted, parent, key, md) -> None:
        choices = md.get("choices")
        if choices and value not in choices:
            self.fail(parent, key, dotted, "one of " + ", ".join(map(str, choices)),
                      choices[0], value)


def _refuse(key: str, problem: str, location: Location | None, hint: str) -> typing.NoReturn:
    raise ConfigError(f"{key}: {problem}", location=location, hint=hint, details={"key": key})


def _cross_check(config: Config, data: dict, loader: _Loader) -> None:
    """What one section says about another: stage names, targets, kinds of checks."""
    _check_stage(config, data, loader)
    _check_consistency(config, data, loader)
    services = data.get("services") or {}
    for name, svc in config.services.items():
        node = services.get(name) if isinstance(services.get(name), dict) else {}
        key = f"services.{name}"
        if svc.target not in config.targets:
            _refuse(f"{key}.target", f"target {svc.target!r} is not configured", loader.where(node, "target"),
                    f"add `targets.{svc.target}:` with a `kind:`, or use one of: "
                    f"{', '.join(config.targets) or '(none yet)'}")
        kind = config.targets[svc.target].kind
        if kind == "kubernetes" and not svc.workloads:
            _refuse(f"{key}.workloads", f"a service on Kubernetes target {svc.target!r} needs at least one "
                    "workload to follow", loader.where(services, name, value=False),
                    "add `workloads: [{kind: Deployment, name: NAME, namespace: NS}]`")
        if kind == "kubernetes" and svc.compose_services:
            _refuse(f"{key}.compose_services", "only services on a VM target own compose services; "
                    f"{svc.target!r} is a Kubernetes target", loader.where(node, "compose_services"),
                    "follow Kubernetes objects with `workloads:` instead")
        if kind == "vm" and svc.workloads:
            _refuse(f"{key}.workloads", f"only services on a Kubernetes target follow workloads; "
                    f"{svc.target!r} is a VM target", loader.where(node, "workloads"),
                    "name the compose services it owns with `compose_services:`")
        for i, check in enumerate(svc.health):
            where = loader.where(node.get("health"), i)
            if check.kind == "compose" and kind != "vm":
                _refuse(f"{key}.health[{i}]", f"a compose check needs a VM target; {svc.target!r} is a "
                        "Kubernetes target", where, "use an http or tcp check")
            if check.kind == "compose" and svc.compose_services and check.compose not in svc.compose_services:
                _refuse(f"{key}.health[{i}]", f"compose service {check.compose!r} is not one of the "
                        "service's compose_services", where, f"use one of: {', '.join(svc.compose_services)}")
    owners: dict[tuple[str, str], str] = {}
    for name, svc in config.services.items():
        for i, compose_service in enumerate(svc.compose_services):
            other = owners.setdefault((svc.target, compose_service), name)
            if other != name:
                _refuse(f"services.{name}.compose_services[{i}]", f"compose service {compose_service!r} "
                        f"is already owned by service {other!r}",
                        loader.where(services[name].get("compose_services"), i),
                        "each compose service belongs to one gitopsctl service")


def _check_stage(config: Config, data: dict, loader: _Loader) -> None:
    """Every name in stage.order is a service, and none is there twice."""
    stage = data.get("stage") if isinstance(data.get("stage"), dict) else {}
    order = stage.get("order")
    seen: set[str] = set()
    for i, group in enumerate(config.stage.groups):
        for name in group:
            item = order[i] if isinstance(order, list) else None
            where = (item, group.index(name)) if isinstance(item, list) else \
                (order, i) if isinstance(order, list) else (data, "stage")
            if name not in config.services:
                _refuse(f"stage.order[{i}]", f"unknown service {name!r}", loader.where(*where),
                        f"use one of: {', '.join(config.services)}")
            if name in seen:
                _refuse(f"stage.order[{i}]", f"service {name!r} is in the stage order twice",
                        loader.where(*where), "list every service once; a group is one list item")
            seen.add(name)


def _check_consistency(config: Config, data: dict, loader: _Loader) -> None:
    """Every pair names two different services, and no pair is there twice."""
    items = data.get("consistency") if isinstance(data.get("consistency"), list) else []
    seen: set[tuple[str, str, str]] = set()
    for i, pair in enumerate(config.consistency):
        node = items[i] if i < len(items) and isinstance(items[i], dict) else {}
        for key, name in (("from", pair.caller), ("to", pair.callee)):
            if name not in config.services:
                _refuse(f"consistency[{i}].{key}", f"unknown service {name!r}", loader.where(node, key),
                        f"use one of: {', '.join(config.services)}")
        if pair.caller == pair.callee:
            _refuse(f"consistency[{i}].to", f"a service is paired with itself ({pair.caller!r})",
                    loader.where(node, "to"),
                    "`from` is the service asked (the frontend), `to` the one it reaches (the backend)")
        if (pair.caller, pair.callee, pair.url) in seen:
            _refuse(f"consistency[{i}]", f"the pair {pair.label} at {pair.url} is listed twice",
                    loader.where(items, i), "list each pair and URL once")
        seen.add((pair.caller, pair.callee, pair.url))


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    return f"{type(value).__name__} {str(value)!r}"


def _yaml_example(example: Any) -> str:
    if isinstance(example, list):
        return "[" + ", ".join(str(e) for e in example) + "]"
    if isinstance(example, bool):
        return "true" if example else "false"
    return str(example)
