"""A proposal as commented YAML: every guess says where it came from, every TODO how to fill it.

Written line by line rather than through a YAML dumper, because the comments are the
point and ruamel's comment API attaches them unreliably to new nodes. Every scalar is
plain only when it reads back as the same string; otherwise it is a JSON string, which
is valid double-quoted YAML. The loader checks the result (init.plan), so a mistake
here is an error, never a file `gitopsctl config` refuses.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from typing import Any

from gitopsctl.init.propose import TODO, Proposal
from gitopsctl.setters import render_scalar

WIDTH = 92

_SECTIONS = {
    "registry": "Where builds are pushed: images are <url>/<project>/<service image>.",
    "git": "Deploy and rollback commits go to this branch of this remote (a name, never a URL).",
    "services": "One service per Flux ImagePolicy the setter markers name. `paths` are where "
                "bump edits its markers; `target` is where it runs.",
    "targets": "Where services run: `kind: kubernetes` is a cluster Flux reconciles, `kind: vm` "
               "a machine running docker compose, reached over SSH.",
    "stage": "Deploy order, each service alone here. A list inside the list deploys together, "
             "e.g. [frontend, [api, worker]]; `delay` is the soak time between them.",
}


@dataclass(frozen=True)
class Todo:
    line: int
    key: str
    text: str

    def to_dict(self) -> dict:
        return {"line": self.line, "key": self.key, "text": self.text}


def scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    plain = render_scalar(text, None)
    return plain if plain == text and _reads_back(text) else json.dumps(text)


_LOADER = None


def _reads_back(text: str) -> bool:
    """Whether the config loader (ruamel, YAML 1.2: `08` is a number there) reads it as `text`."""
    global _LOADER
    if _LOADER is None:
        from ruamel.yaml import YAML

        _LOADER = YAML(typ="safe", pure=True)
    try:
        return _LOADER.load(f"k: {text}\n") == {"k": text}
    except Exception:  # noqa: BLE001 - any refusal means: quote it
        return False


class _Writer:
    def __init__(self, proposal: Proposal):
        self.proposal = proposal
        self.lines: list[str] = []
        self.todos: list[Todo] = []

    def comment(self, indent: int, text: str, prefix: str = "") -> None:
        lead = " " * indent + "# "
        body = textwrap.wrap(prefix + text, WIDTH - len(lead), break_on_hyphens=False,
                             break_long_words=False) or [""]
        self.lines += [lead + line for line in body]

    def notes(self, path: tuple, indent: int) -> None:
        for note in self.proposal.notes.get(path, []):
            if note.todo:
                self.comment(indent, note.text, TODO + ": ")
                self.todos.append(Todo(len(self.lines) + 1, _dotted(path), note.text))
            else:
                self.comment(indent, note.text)
            for line in (note.example or "").splitlines():
                self.lines.append(" " * indent + "#   " + line)

    def mapping(self, node: dict, path: tuple, indent: int) -> None:
        for key, value in node.items():
            self.entry(key, value, path + (key,), indent)

    def entry(self, key: str, value: Any, path: tuple, indent: int) -> None:
        self.notes(path, indent)
        pad = " " * indent
        shown = scalar(key)   # a service named `0` or `yes` must read back as that string
        if isinstance(value, dict):
            self.lines.append(f"{pad}{shown}:" if value else f"{pad}{shown}: {{}}")
            self.mapping(value, path, indent + 2)
        elif isinstance(value, list):
            self.sequence(key, value, indent)
        else:
            self.lines.append(f"{pad}{shown}: {scalar(value)}")

    def sequence(self, key: str, items: list, indent: int) -> None:
        pad, shown = " " * indent, scalar(key)
        flat = all(not isinstance(i, (dict, list)) for i in items)
        if not items or (flat and key == "compose_services") or key == "order":
            self.lines.append(f"{pad}{shown}: {_flow(items)}")
            return
        self.lines.append(f"{pad}{shown}:")
        for item in items:
            if isinstance(item, dict):
                first = True
                for k, v in item.items():
                    lead = f"{pad}  - " if first else f"{pad}    "
                    value = _flow(v) if isinstance(v, list) else scalar(v)
                    self.lines.append(f"{lead}{scalar(k)}: {value}")
                    first = False
            else:
                self.lines.append(f"{pad}  - {_flow(item) if isinstance(item, list) else scalar(item)}")


def _flow(items: list) -> str:
    return "[" + ", ".join(_flow(i) if isinstance(i, list) else scalar(i) for i in items) + "]"


def _dotted(path: tuple) -> str:
    return ".".join(str(p) for p in path)


def render(proposal: Proposal, header: list[str]) -> tuple[str, list[Todo]]:
    """The YAML text and its TODOs, each with the (1-based) line of the key it is about."""
    writer = _Writer(proposal)
    for line in header:
        writer.comment(0, line)
    for key, value in proposal.document.items():
        writer.lines.append("")
        if key in _SECTIONS:
            writer.comment(0, _SECTIONS[key])
        writer.entry(key, value, (key,), 0)
    return "\n".join(writer.lines) + "\n", writer.todos
