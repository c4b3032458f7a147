"""Label and field selectors in the query-string syntax the API server accepts.

Labels: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`, comma-joined.
Fields: `metadata.name=x`, `metadata.namespace=x`, `status.phase=x` (and `!=`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

_SET_RE = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ_RE = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)\s*$")
_EXISTS_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9./_-]+)\s*$")


class SelectorError(ValueError):
    pass


def _split_terms(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    terms, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        terms.append(current)
    return [t for t in terms if t.strip()]


def _label_term(term: str) -> Callable[[dict], bool]:
    m = _SET_RE.match(term)
    if m:
        key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    m = _EQ_RE.match(term)
    if m:
        key, op, value = m.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    m = _EXISTS_RE.match(term)
    if m:
        negate, key = m.group(1) == "!", m.group(2)
        return lambda labels: (key in labels) != negate
    raise SelectorError(f"unable to parse requirement: {term!r}")


_FIELDS: dict[str, Callable[[dict], Any]] = {
    "metadata.name": lambda o: (o.get("metadata") or {}).get("name"),
    "metadata.namespace": lambda o: (o.get("metadata") or {}).get("namespace"),
    "status.phase": lambda o: (o.get("status") or {}).get("phase"),
}


def _field_term(term: str) -> Callable[[dict], bool]:
    m = _EQ_RE.match(term)
    if not m or m.group(1) not in _FIELDS:
        raise SelectorError(f"field label not supported: {term!r}")
    path, op, value = m.groups()
    getter = _FIELDS[path]
    if op == "!=":
        return lambda obj: getter(obj) != value
    return lambda obj: getter(obj) == value


@dataclass
class Selector:
    labels: list[Callable[[dict], bool]] = field(default_factory=list)
    fields: list[Callable[[dict], bool]] = field(default_factory=list)

    @classmethod
    def parse(cls, label_selector: str | None, field_selector: str | None = None) -> "Selector":
        return cls([_label_term(t) for t in _split_terms(label_selector or "")],
                   [_field_term(t) for t in _split_terms(field_selector or "")])

    @classmethod
    def from_match_labels(cls, match_labels: dict[str, str]) -> "Selector":
        return cls([(lambda labels, k=k, v=v: labels.get(k) == v) for k, v in match_labels.items()])

    def matches(self, obj: dict) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(t(labels) for t in self.labels) and all(t(obj) for t in self.fields)
