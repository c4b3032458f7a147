"""Rules holding gitopsctl.yaml against the repository: where each service's markers and
compose services really are.

    GOC007  a service with no setter marker for its policy where its paths say
    GOC016  (warning) a marker bump never edits: its policy is no service's, or it lies
            outside the paths of the service whose policy it names
    GOC017  a compose service a VM service names (compose_services, a compose health
            check) that its target's compose file does not define
    GOC008  a VM target's compose file that does not exist
    GOC001  a sealed secrets file a VM target lists that does not exist
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from gitopsctl.checks import WARNING, Finding
from gitopsctl.checks.documents import YamlFile
from gitopsctl.checks.scope import Lookups, Scope, display
from gitopsctl.errors import Location


class ConfigLines:
    """file:line of a key of gitopsctl.yaml, so a finding about the config points into it."""

    def __init__(self, config_path: Path, shown: str) -> None:
        self.shown = shown
        try:
            from ruamel.yaml import YAML

            self._data: Any = YAML(typ="rt").load(Path(config_path).read_text(encoding="utf-8"))
        except Exception:  # noqa: BLE001 - only a nicer location; the config loader reports errors
            self._data = None

    def at(self, *keys: Any) -> Location:
        node, line = self._data, None
        for key in keys:
            lc = getattr(node, "lc", None)
            try:
                if isinstance(node, dict):
                    line = lc.key(key)[0] + 1
                elif isinstance(node, list):
                    line = lc.item(key)[0] + 1
                else:
                    break
                node = node[key]
            except (AttributeError, KeyError, IndexError, TypeError):
                break
        return Location(self.shown, line, None)


def services_without_markers(config, scope: Scope, lookups: Lookups,
                             lines: ConfigLines) -> Iterator[Finding]:
    for name, service in config.services.items():
        found = sum(1 for path in scope.by_service.get(name, ())
                    if (file := lookups.file(path)) is not None and file.scan is not None
                    for m in file.scan.markers if m.policy == service.policy)
        if found:
            continue
        yield Finding("GOC007", lines.at("services", name),
                      f"service {name!r} has no setter marker for {service.policy}; looked in "
                      f"{_where_looked(config, name)}",
                      f'mark its image: image: REF # {{"$imagepolicy": "{service.policy}"}}, '
                      f"or fix services.{name}.paths")


def _where_looked(config, name: str) -> str:
    service = config.services[name]
    places = [p if config.resolve(p).exists() else f"{p} (missing)" for p in service.paths]
    target = config.targets.get(service.target)
    if getattr(target, "kind", None) == "vm" and not any(
            _within(config.resolve(target.compose_file), config.resolve(p)) for p in service.paths):
        places.append(f"{target.compose_file} (the compose file of target {service.target!r})")
    return ", ".join(places) or "nowhere (services." + name + ".paths is empty)"


def markers_outside_services(config, files: Iterable[YamlFile], scope: Scope,
                             known_policy) -> Iterator[Finding]:
    """Markers bump never edits. Warnings: Flux's own ImageUpdateAutomation may own them."""
    owners: dict[str, list[str]] = {}
    for name, service in config.services.items():
        owners.setdefault(service.policy, []).append(name)
    for file in files:
        if file.scan is None:
            continue
        key = file.path.resolve()
        for marker in file.scan.markers:
            if not known_policy(marker.policy):
                continue  # GOC006 says it
            names = owners.get(marker.policy)
            if not names:
                yield Finding("GOC016", marker.location,
                              f"setter marker for {marker.policy}, which no service in "
                              "gitopsctl.yaml names: bump never edits it",
                              f"add a service with policy: {marker.policy} (`gitopsctl init` "
                              "proposes one per policy), or leave the field to Flux's "
                              "ImageUpdateAutomation", severity=WARNING)
            elif not any(key in scope.by_service.get(n, ()) for n in names):
                relative = display(file.path.parent, Path(config.root))
                yield Finding("GOC016", marker.location,
                              f"setter marker for {marker.policy} (service {names[0]!r}) lies "
                              f"outside services.{names[0]}.paths: bump never edits it",
                              f"add {relative} to services.{names[0]}.paths, or move the marker",
                              severity=WARNING)


def compose_bindings(config, lookups: Lookups, lines: ConfigLines) -> Iterator[Finding]:
    for name, service in config.services.items():
        target = config.targets.get(service.target)
        if getattr(target, "kind", None) != "vm":
            continue
        path = config.resolve(target.compose_file)
        file = lookups.file(path) if path.is_file() else None
        defined = _compose_services(file)
        if defined is None:
            continue  # missing (GOC008 below) or unparsable (GOC001 on the file)
        wanted = [(("services", name, "compose_services", i), s)
                  for i, s in enumerate(service.compose_services)]
        wanted += [(("services", name, "health", i), h.service)
                   for i, h in enumerate(service.health) if h.kind == "compose"]
        for keys, compose_name in wanted:
            if compose_name in defined:
                continue
            yield Finding("GOC017", lines.at(*keys),
                          f"service {name!r} names compose service {compose_name!r}, which "
                          f"{target.compose_file} does not define",
                          f"services there: {', '.join(defined) or 'none'}; fix the name in "
                          f"services.{name}, or add the service to {target.compose_file}")


def missing_paths(scope: Scope, lines: ConfigLines) -> Iterator[Finding]:
    for key, relative in scope.missing:
        keys = _keys(key)
        if key.endswith(".compose_file"):
            yield Finding("GOC008", lines.at(*keys), f"compose file {relative} does not exist",
                          f"commit it, or fix {key}")
        elif ".sealed_secrets[" in key:
            yield Finding("GOC001", lines.at(*keys), f"sealed secrets file {relative} does not "
                          "exist", f"seal it (`gitopsctl seal`) and commit it, or fix {key}")


def _within(path: Path, scope: Path) -> bool:
    return path == scope or scope in path.parents


def _keys(dotted: str) -> Sequence[Any]:
    out: list[Any] = []
    for part in dotted.split("."):
        name, _, index = part.partition("[")
        out.append(name)
        if index:
            out.append(int(index.rstrip("]")))
    return out


def _compose_services(file: YamlFile | None) -> list[str] | None:
    if file is None or not file.documents or not isinstance(file.documents[0], dict):
        return None
    services = file.documents[0].get("services")
    return [str(s) for s in services] if isinstance(services, dict) else []
