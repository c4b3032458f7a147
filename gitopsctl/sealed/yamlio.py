"""Manifests as text: one YAML/JSON document in (with line numbers), kubeseal-style YAML out."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any, Mapping

from gitopsctl.errors import InputError, Location
from gitopsctl.sealed.resource import SECRET_KIND


def parse_manifest(text: str, *, source: str = "<stdin>", kind: str | None = None) -> dict:
    """One YAML (or JSON) document; line numbers are kept for later error messages.

    Hostile input (too big, control characters, too deep, alias bombs) is refused first
    with yamlsafe.HostileInput, before ruamel builds anything.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    from gitopsctl import yamlsafe

    yamlsafe.guard_text(text, source)
    yaml = YAML(typ="rt")
    try:
        docs = [d for d in yaml.load_all(text) if d is not None]
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = str(exc.problem or exc.context or "syntax error")
        if "duplicate key" in problem:
            problem = "a key appears twice in the same mapping"  # ruamel's text quotes the values
        raise InputError(f"not valid YAML: {problem}",
                         hint="fix the syntax; `kubectl create secret generic NAME "
                              "--from-literal=KEY=VALUE --dry-run=client -o yaml` makes a valid Secret",
                         location=Location(source, line)) from None
    except YAMLError as exc:  # unmarked errors may quote the input: name only the type
        raise InputError(f"not valid YAML ({type(exc).__name__})",
                         location=Location(source)) from None
    if not docs:
        raise InputError("the input is empty", hint="pass a manifest with -f FILE or on stdin",
                         location=Location(source))
    if len(docs) > 1:
        second = docs[1]
        line = second.lc.line + 1 if hasattr(second, "lc") else None
        raise InputError(f"the input holds {len(docs)} YAML documents; one is expected",
                         hint="split the file and handle one manifest per call",
                         location=Location(source, line))
    doc = docs[0]
    if not isinstance(doc, dict):
        raise InputError("the document is not a mapping (a Kubernetes manifest)",
                         location=Location(source, 1))
    if kind is not None and doc.get("kind") != kind:
        raise InputError(f"expected kind {kind}, found {doc.get('kind')!r}",
                         hint=("`gitopsctl seal` takes a Secret" if kind == SECRET_KIND
                               else "`gitopsctl unseal` takes a SealedSecret"),
                         location=Location(source, line_of(doc, "kind")))
    return doc


def dump_manifest(doc: Mapping[str, Any]) -> str:
    """YAML as kubeseal prints it: keys sorted, 2-space indent, one line per value,
    `null` for empty timestamps and double quotes only where a plain scalar would change type."""
    lines: list[str] = []
    _emit_mapping(to_plain(doc), 0, lines)
    return "\n".join(lines) + "\n"


def _emit_mapping(mapping: Mapping[str, Any], indent: int, lines: list[str]) -> None:
    pad = " " * indent
    for key in sorted(mapping):
        value = mapping[key]
        head = f"{pad}{_scalar(str(key))}:"
        if isinstance(value, dict) and value:
            lines.append(head)
            _emit_mapping(value, indent + 2, lines)
        elif isinstance(value, list) and value:
            lines.append(head)
            _emit_sequence(value, indent, lines)
        else:
            lines.append(f"{head} {_scalar(value)}")


def _emit_sequence(items: list, indent: int, lines: list[str]) -> None:
    pad = " " * indent
    for item in items:
        nested: list[str] = []
        if isinstance(item, dict) and item:
            _emit_mapping(item, indent + 2, nested)
        elif isinstance(item, list) and item:
            _emit_sequence(item, indent + 2, nested)
        else:
            lines.append(f"{pad}- {_scalar(item)}")
            continue
        nested[0] = f"{pad}- {nested[0][indent + 2:]}"
        lines.extend(nested)


_PLAIN_RE = re.compile(r"^[A-Za-z0-9_./]([A-Za-z0-9_./+= -]*[A-Za-z0-9_./+=-])?$")
# YAML 1.1 (what Kubernetes' go-yaml reads) turns these into non-strings when unquoted.
_YAML11_SPECIAL_RE = re.compile(
    r"^(y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF"
    r"|null|Null|NULL|~|[-+]?(\.[0-9]+|[0-9][0-9_]*)(\.[0-9_]*)?([eE][-+]?[0-9]+)?"
    r"|[-+]?0[xob]?[0-9a-fA-F_]+|[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?"
    r"|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}.*|=|<<)$")


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    text = str(value)
    if _PLAIN_RE.match(text) and not _YAML11_SPECIAL_RE.match(text):
        return text
    return _double_quoted(text)


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _double_quoted(text: str) -> str:
    """A YAML double-quoted scalar; escapes everything YAML would fold or refuse raw
    (control characters, NEL and the Unicode line/paragraph separators)."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif 0x20 <= code <= 0x7E or (0xA0 <= code <= 0xD7FF and code not in (0x2028, 0x2029)) \
                or (0xE000 <= code <= 0xFFFD and code != 0xFEFF) or code >= 0x10000:
            out.append(ch)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        else:
            out.append(f"\\u{code:04x}")
    out.append('"')
    return "".join(out)


def to_plain(value: Any) -> Any:
    """ruamel's commented containers and scalar subclasses -> dict/list/str/int/bool."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


def line_of(node: Any, key: Any) -> int | None:
    lc = getattr(node, "lc", None)
    if lc is None:
        return None
    try:
        return int(lc.key(key)[0]) + 1
    except (KeyError, TypeError, AttributeError):
        return None
