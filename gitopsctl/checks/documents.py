"""Load YAML files once for every rule: documents with line numbers, or a GOC001 finding."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from gitopsctl.checks import Finding
from gitopsctl.errors import InputError, Location
from gitopsctl.setters import FileScan, read_text, scan_text

COMPOSE_NAMES = ("docker-compose.yml", "docker-compose.yaml", "compose.yml", "compose.yaml")
KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


@dataclass
class YamlFile:
    path: Path
    display: str
    text: str
    documents: list[Any] = field(default_factory=list)   # ruamel round-trip data (has .lc)
    scan: FileScan | None = None                         # setter markers

    @property
    def is_compose(self) -> bool:
        name = self.path.name
        if name in COMPOSE_NAMES or (name.startswith(("docker-compose.", "compose."))
                                     and name.endswith((".yml", ".yaml"))):
            return True
        # any file shaped like a compose project: top-level services mapping, no kind
        return len(self.documents) == 1 and isinstance(self.documents[0], dict) and \
            isinstance(self.documents[0].get("services"), dict) and \
            "kind" not in self.documents[0] and "apiVersion" not in self.documents[0]

    def k8s_documents(self) -> Iterator[dict]:
        for doc in self.documents:
            if isinstance(doc, dict) and "kind" in doc and "apiVersion" in doc:
                yield doc


def load(path: Path, display: str) -> tuple[YamlFile | None, list[Finding]]:
    """The parsed file, or None and the GOC001 finding saying where it breaks."""
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import DuplicateKeyError
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        text = read_text(path, display)
    except InputError as exc:
        return None, [Finding("GOC001", exc.location or Location(display), exc.message,
                              exc.hint or "save the file as UTF-8")]
    yaml = YAML(typ="rt")
    try:
        documents = [d for d in yaml.load_all(text)]
    except DuplicateKeyError as exc:
        mark = exc.problem_mark
        return None, [Finding("GOC001", Location(display, mark.line + 1, mark.column + 1),
                              f"duplicate key: {_first_line(exc.problem)}",
                              "a key may appear once per mapping; Kubernetes would keep only "
                              "one of them silently")]
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(display, mark.line + 1, mark.column + 1) if mark else Location(display)
        return None, [Finding("GOC001", loc, f"not valid YAML: {exc.problem or exc.context}",
                              "fix the syntax at this position (indentation, quotes, colons)")]
    except YAMLError as exc:
        return None, [Finding("GOC001", Location(display), f"not valid YAML: {exc}",
                              "fix the YAML syntax")]
    file = YamlFile(path=path, display=display, text=text, documents=documents)
    try:
        file.scan = scan_text(text, display, path)
    except InputError as exc:
        return None, [Finding("GOC001", exc.location or Location(display), exc.message,
                              exc.hint or "fix the YAML")]
    return file, []


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if text and text.strip() else "repeated key"


def position(node: Any, key: Any, display: str, *, of_key: bool = False) -> Location:
    """file:line:column of `node[key]` (1-based), falling back to the node's own line."""
    lc = getattr(node, "lc", None)
    try:
        if isinstance(node, dict):
            line, column = lc.key(key) if of_key else lc.value(key)
        else:
            line, column = lc.item(key)
        return Location(display, line + 1, column + 1)
    except (AttributeError, KeyError, TypeError, IndexError):
        line = getattr(lc, "line", None)
        return Location(display, (line or 0) + 1, 1)


def walk(node: Any, path: tuple = ()) -> Iterator[tuple[Any, Any, Any, tuple]]:
    """(parent, key, value, path) for every entry of every mapping and sequence."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield node, key, value, path + (key,)
            yield from walk(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield node, index, value, path + (index,)
            yield from walk(value, path + (index,))
