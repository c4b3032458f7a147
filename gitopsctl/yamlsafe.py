"""Bounds on YAML input: every YAML text gitopsctl parses passes these checks first.

A real manifest is a few hundred lines; a CRD bundle a few MB. What no real manifest
has, and what only costs time, memory or a traceback, is refused before any parser
builds a node, with file:line:column and exit 2 (`HostileInput`), in every command:

  size        MAX_FILE_BYTES (8 MiB). The largest bundles people commit (all
              Prometheus-operator CRDs in one file, Argo CD's install.yaml) are 1-5 MB,
              and the API server refuses any one request body over 3 MiB. 8 MiB leaves
              room for the biggest of them twice over while `check` on a file at the
              limit stays within the goal set for any input (10 s, 300 MB; measured by
              benchmarks/hostile_yaml.py): at 16 MiB it took 11 s and 530 MB.
  characters  YAML 1.2 (5.1) allows no C0 control character but TAB, LF and CR, no DEL,
              no C1 but NEL, no surrogates and no U+FFFE/U+FFFF; a byte-order mark only
              first. A NUL usually means a binary file or a bad copy-paste.
  depth       MAX_DEPTH (100) nested collections, aliases counted at the depth they are
              used. Kubernetes manifests stay under 20; the Python parsers gitopsctl
              uses recurse per level and fail past ~300.
  aliases     MAX_ALIAS_NODES (100,000) nodes reached through aliases per file. A
              "billion laughs" file is ten lines whose aliases expand to 10^9 nodes;
              compose files that share settings with anchors use a few hundred.
              (go-yaml, which Kubernetes decodes with, refuses "excessive aliasing"
              the same way: yaml.v3 decode.go allowedAliasRatio.)

Depth and aliases are counted on libyaml's event stream (no nodes, no recursion), so
the check costs a fraction of a parse.
"""

from __future__ import annotations

import os
import re
import stat
from typing import Iterable, Iterator

from gitopsctl.errors import ConfigError, InputError, Location

MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 100
MAX_ALIAS_NODES = 100_000

_NO_CHANGE = "no file was changed"
# Everything YAML 1.2 does not call printable (production [1] c-printable), plus a BOM.
_FORBIDDEN = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufefe\uff00-\ufffd"
                        "\U00010000-\U0010ffff]")
_NAMES = {0: "NUL", 0x7F: "DEL", 0x1B: "ESC", 0xFEFF: "byte-order mark"}


class HostileInput(InputError):
    """Input no real manifest has: too big, control characters, too deep, alias bombs.

    Always exit 2, even in `check` (which reports ordinary syntax errors as findings):
    the file cannot be reviewed at all.
    """


class HostileConfig(HostileInput, ConfigError):
    """The same refusal for gitopsctl.yaml, still a ConfigError for its callers."""

    kind = "config"


def check_size(size: int, display: str, *, limit: int = MAX_FILE_BYTES) -> None:
    if size > limit:
        raise HostileInput(
            f"{display} is {_mib(size)}; gitopsctl reads YAML files up to {_mib(limit)}",
            location=Location(display),
            hint="real manifests are far smaller (a CRD bundle is a few MB): split the file, "
                 f"or keep generated data out of the scanned paths; {_NO_CHANGE}")


def read_bytes(path: os.PathLike | str, display: str, *, follow_links: bool = True,
               limit: int = MAX_FILE_BYTES) -> bytes:
    """The file's bytes, refused (HostileInput) past `limit` before anything is read.

    With follow_links=False a symbolic link is refused (O_NOFOLLOW), so a link swapped in
    after selection is never read through.
    """
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
    if not follow_links:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if not follow_links and os.path.islink(path):
            raise InputError(f"{display} is a symbolic link; gitopsctl does not read through links",
                             location=Location(display),
                             hint="edit the file the link points to") from None
        raise InputError(f"cannot read {display}: {exc.strerror or exc}",
                         location=Location(display)) from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if stat.S_ISDIR(info.st_mode):
            raise InputError(f"{display} is a directory, not a file", location=Location(display))
        if stat.S_ISREG(info.st_mode):
            check_size(info.st_size, display, limit=limit)
        data = handle.read(limit + 1)  # a pipe or a file still growing: never past the limit
    check_size(len(data), display, limit=limit)
    return data


def contains(path: os.PathLike | str, token: bytes, display: str, *, follow_links: bool = False,
             chunk: int = 1 << 20) -> bool:
    """Whether the file holds `token`, reading it in chunks (any size, bounded memory)."""
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | (0 if follow_links else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise InputError(f"cannot read {display}: {exc.strerror or exc}",
                         location=Location(display)) from None
    tail = b""
    with os.fdopen(fd, "rb") as handle:
        while True:
            block = handle.read(chunk)
            if not block:
                return False
            if token in tail + block:
                return True
            tail = block[-(len(token) - 1):] if len(token) > 1 else b""


def decode(data: bytes, display: str) -> str:
    """UTF-8 without newline translation, so CRLF and a missing final newline survive."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise InputError(f"not UTF-8 text (byte {exc.start})", location=Location(display, line),
                         hint="YAML files must be UTF-8 encoded") from None


def read_text(path: os.PathLike | str, display: str, *, follow_links: bool = True) -> str:
    """Bounded read, UTF-8 decode and character screen (not the structure: see guard_text)."""
    text = decode(read_bytes(path, display, follow_links=follow_links), display)
    screen_text(text, display)
    return text


def screen_text(text: str, display: str) -> None:
    """Refuse text over the size limit or with characters YAML forbids."""
    if len(text) > MAX_FILE_BYTES // 4:  # UTF-8 needs at most 4 bytes a character
        check_size(len(text.encode("utf-8", "surrogatepass")), display)
    start = 1 if text.startswith("\ufeff") else 0
    bad = _FORBIDDEN.search(text, start)
    if bad is None:
        return
    index = bad.start()
    code = ord(text[index])
    name = _NAMES.get(code, "control character" if code < 0xA0 else "character YAML forbids")
    line, column = position(text, index)
    raise HostileInput(f"{name} U+{code:04X} in the text; YAML does not allow it",
                       location=Location(display, line, column),
                       hint="YAML allows only tab, LF and CR among control characters: remove "
                            f"it (a binary file, or a bad copy-paste?); {_NO_CHANGE}")


def position(text: str, index: int) -> tuple[int, int]:
    """1-based (line, column) of a character index."""
    line_start = text.rfind("\n", 0, index) + 1
    bom = 1 if line_start == 0 and text.startswith("\ufeff") else 0
    return text.count("\n", 0, index) + 1, index - line_start + 1 - bom


def bounded(events: Iterable, display: str, *, max_depth: int = MAX_DEPTH,
            max_alias_nodes: int = MAX_ALIAS_NODES) -> Iterator:
    """Pass parser events through, refusing too deep nesting and alias expansion.

    Works on PyYAML's and ruamel.yaml's events alike (same class names). Each open
    collection counts its nodes and height, so an alias costs the size of what its
    anchor names, used at the depth where the alias stands.
    """
    frames: list[list] = []                       # [nodes, height, anchor]
    anchors: dict[str, tuple[int, int]] = {}      # anchor -> (nodes, height)
    expanded = 0
    for event in events:
        name = type(event).__name__
        if name in ("MappingStartEvent", "SequenceStartEvent"):
            frames.append([1, 1, event.anchor])
            if len(frames) > max_depth:
                raise _too_deep(display, event.start_mark, max_depth)
        elif name == "CollectionEndEvent" or name in ("MappingEndEvent", "SequenceEndEvent"):
            if frames:
                nodes, height, anchor = frames.pop()
                if anchor:
                    anchors[anchor] = (nodes, height)
                _add(frames, nodes, height)
        elif name == "ScalarEvent":
            if event.anchor:
                anchors[event.anchor] = (1, 0)
            _add(frames, 1, 0)
        elif name == "AliasEvent":
            nodes, height = anchors.get(event.anchor, (1, 0))
            expanded += nodes
            if expanded > max_alias_nodes:
                raise HostileInput(
                    f"aliases expand to more than {max_alias_nodes:,} nodes (*{event.anchor} "
                    "here); this looks like an alias bomb",
                    location=_where(display, event.start_mark),
                    hint="write the values out, or use fewer aliases of large anchors; "
                         + _NO_CHANGE)
            if len(frames) + height > max_depth:
                raise _too_deep(display, event.start_mark, max_depth,
                                f" (through alias *{event.anchor})")
            _add(frames, nodes, height)
        elif name == "DocumentStartEvent":
            anchors.clear()  # anchors are local to their document
        yield event


def _add(frames: list[list], nodes: int, height: int) -> None:
    if frames:
        parent = frames[-1]
        parent[0] += nodes
        parent[1] = max(parent[1], height + 1)


def _too_deep(display: str, mark, limit: int, how: str = "") -> HostileInput:
    return HostileInput(f"collections nested more than {limit} deep{how}",
                        location=_where(display, mark),
                        hint="Kubernetes manifests nest a few levels; flatten the data or move "
                             f"it out of YAML; {_NO_CHANGE}")


def _where(display: str, mark) -> Location:
    if mark is None:
        return Location(display)
    return Location(display, mark.line + 1, mark.column + 1)


def guard_text(text: str, display: str) -> None:
    """Raise HostileInput if `text` is hostile; for callers that then parse it themselves.

    A plain syntax error ends the check silently: the caller's own parser reports it in
    its own words, and cannot get past it to anything hostile later in the text.
    """
    screen_text(text, display)
    import yaml

    loader = yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader
    body = text[1:] if text.startswith("\ufeff") else text
    try:
        for _ in bounded(yaml.parse(body, Loader=loader), display):
            pass
    except yaml.YAMLError as exc:
        refused = parser_limit(exc, display)
        if refused is not None:
            raise refused from None


def parser_limit(exc: Exception, display: str) -> HostileInput | None:
    """libyaml's own nesting limit (it scans ahead of the events) as the same refusal."""
    if "nesting depth" not in str(getattr(exc, "problem", "") or ""):
        return None
    return _too_deep(display, getattr(exc, "problem_mark", None), MAX_DEPTH)


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"
