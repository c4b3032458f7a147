"""Load YAML files once for every rule: documents with line numbers, or a GOC001 finding."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from gitopsctl import yamlsafe
from gitopsctl.checks import Finding
from gitopsctl.errors import InputError, Location
from gitopsctl.setters import TOKEN, FileScan, read_text, scan_text

COMPOSE_NAMES = ("docker-compose.yml", "docker-compose.yaml", "compose.yml", "compose.yaml")
KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


@dataclass
class YamlFile:
    path: Path
    display: str
    text: str
    documents: list[Any] = field(default_factory=list)   # LineDict/LineList (have .lc)
    scan: FileScan | None = None                         # setter markers
    compose: bool = False   # a VM target's compose file, whatever its name or shape

    @property
    def is_compose(self) -> bool:
        if self.compose:
            return True
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
    """The parsed file, or None and the GOC001 finding saying where it breaks.

    Hostile input (yamlsafe: too big, control characters, too deep, alias bombs) is not
    a finding but raised: exit 2, the file cannot be reviewed at all.
    """
    try:
        text = read_text(path, display)
    except yamlsafe.HostileInput:
        raise
    except InputError as exc:
        return None, [Finding("GOC001", exc.location or Location(display), exc.message,
                              exc.hint or "save the file as UTF-8")]
    scan = None
    if TOKEN in text:  # the marker scan applies the same bounds on its one event pass
        try:
            scan = scan_text(text, display, path)
        except yamlsafe.HostileInput:
            raise
        except InputError as exc:
            return None, [Finding("GOC001", exc.location or Location(display), exc.message,
                                  exc.hint or "fix the YAML")]
    else:
        yamlsafe.guard_text(text, display)
    try:
        documents = parse_documents(text)
    except _DuplicateKey as exc:
        return None, [Finding("GOC001", Location(display, exc.line + 1, exc.column + 1),
                              f"duplicate key: {exc.key!r} appears twice in this mapping",
                              "a key may appear once per mapping; Kubernetes would keep only "
                              "one of them silently")]
    except Exception as exc:  # noqa: BLE001 - PyYAML's errors, narrowed below
        import yaml

        if not isinstance(exc, yaml.YAMLError):
            raise
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        loc = Location(display, mark.line + 1, mark.column + 1) if mark else Location(display)
        problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or "syntax error"
        return None, [Finding("GOC001", loc, f"not valid YAML: {problem}",
                              "fix the syntax at this position (indentation, quotes, colons)")]
    return YamlFile(path=path, display=display, text=text, documents=documents,
                    scan=scan or scan_text(text, display, path)), []


# ---------------------------------------------------------------- a fast loader with lines
#
# libyaml (through PyYAML) builds the documents about twenty times faster than
# ruamel.yaml's round-trip loader and in a fraction of its memory, which keeps `check`
# within seconds on the biggest file yamlsafe lets through. The rules only need plain
# dicts and lists that know where each key and value stands (`.lc`, as ruamel names it).
# Scalars resolve as YAML 1.1, which is what Kubernetes' own decoder (go-yaml) does.

class _Lines:
    """Where a collection and its entries stand (0-based, as ruamel's `.lc`).

    One tuple per entry (key line, key column, value line, value column) keeps the
    cost near that of the data itself.
    """

    __slots__ = ("line", "col", "_at")

    def __init__(self, mark) -> None:
        self.line, self.col = mark.line, mark.column
        self._at: dict = {}

    def key(self, key) -> tuple[int, int]:
        return self._at[key][:2]

    def value(self, key) -> tuple[int, int]:
        return self._at[key][2:]

    def item(self, index: int) -> tuple[int, int]:
        return self._at[index][2:]


class LineDict(dict):
    __slots__ = ("lc",)


class LineList(list):
    __slots__ = ("lc",)


class _DuplicateKey(Exception):
    def __init__(self, key, mark) -> None:
        super().__init__(key)
        self.key, self.line, self.column = key, mark.line, mark.column


def parse_documents(text: str) -> list[Any]:
    """Every document of `text` as LineDict/LineList/scalars; raises yaml.YAMLError."""
    import yaml

    return list(yaml.load_all(text, Loader=_loader_class()))


_LOADER = None


def _loader_class():
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml
    from yaml.constructor import ConstructorError

    base = yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader

    class LineLoader(base):  # type: ignore[misc, valid-type]
        pass

    def construct_mapping(loader, node):
        data = LineDict()
        data.lc = lines = _Lines(node.start_mark)
        yield data
        own = [pair for pair in node.value if pair[0].tag != "tag:yaml.org,2002:merge"]
        loader.flatten_mapping(node)  # `<<: *anchor` merges come first, own keys override
        seen: set = set()
        own_ids = {id(k) for k, _ in own}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise ConstructorError("while constructing a mapping", node.start_mark,
                                       "found an unhashable key", key_node.start_mark) from None
            if id(key_node) in own_ids:
                if key in seen:
                    raise _DuplicateKey(key, key_node.start_mark)
                seen.add(key)
            data[key] = loader.construct_object(value_node, deep=False)
            key_mark, value_mark = key_node.start_mark, value_node.start_mark
            lines._at[key] = (key_mark.line, key_mark.column, value_mark.line, value_mark.column)

    def construct_sequence(loader, node):
        data = LineList()
        data.lc = lines = _Lines(node.start_mark)
        yield data
        for index, child in enumerate(node.value):
            data.append(loader.construct_object(child, deep=False))
            mark = child.start_mark
            lines._at[index] = (mark.line, mark.column, mark.line, mark.column)

    LineLoader.add_constructor("tag:yaml.org,2002:map", construct_mapping)
    LineLoader.add_constructor("tag:yaml.org,2002:omap", construct_sequence)
    LineLoader.add_constructor("tag:yaml.org,2002:seq", construct_sequence)
    # unknown tags (!Ref, !!python/...) load as their plain node, like a manifest reader would
    LineLoader.add_constructor(None, _construct_untagged)
    _LOADER = LineLoader
    return _LOADER


def _construct_untagged(loader, node):
    import yaml

    if isinstance(node, yaml.MappingNode):
        return loader.yaml_constructors["tag:yaml.org,2002:map"](loader, node)
    if isinstance(node, yaml.SequenceNode):
        return loader.yaml_constructors["tag:yaml.org,2002:seq"](loader, node)
    return loader.construct_scalar(node)


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
