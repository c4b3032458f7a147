"""Flux `$imagepolicy` setter markers: find marked scalars and edit them in place.

A marker is a line comment holding JSON, right after a scalar value:

    image: harbor.lan/homelab/frontend:main-1a2b3c4-1 # {"$imagepolicy": "flux-system:frontend"}
    newTag: main-1a2b3c4-1 # {"$imagepolicy": "flux-system:frontend:tag"}

`NS:NAME` holds a whole reference (name:tag, plus @digest when the new value has one);
`NS:NAME:tag`, `:name` and `:digest` hold only that part, as in Flux's
image-automation-controller.

Flux re-serialises every file it touches. Here the scalar is located with ruamel.yaml's
event parser (exact character offsets) and the new text is spliced into the original
text, so every character outside the scalar stays as it was: comments, quoting,
indentation, CRLF, anchors, flow styles, document markers and the final newline.

Which files are read: the ones Flux reads
-----------------------------------------
One rule (`flux_reads`, `select_yaml` for a working tree, `tree_selected` for a git
tree) decides which files bump, stage and check's marker scan read, and it is the rule
of image-automation-controller (internal/update/filereader.go, ScreeningLocalReader,
which adapts kyaml's kio.LocalPackageReader and leaves out its features, .krmignore
among them; internal/update/setters.go; internal/policy/applier.go), so gitopsctl and
an ImageUpdateAutomation with the same path set the same markers:

- Every directory under the path is walked, dot-directories included (filepath.Walk,
  no hidden-file filter). Only `.git` is left out: git never tracks it, so a working
  tree and the commit's tree give the same files.
- A file is read when its name ends in `.yaml` or `.yml` (filepath.Ext, case-sensitive)
  or is exactly `Kustomization`; every other name (`.json`, `Dockerfile`, a README with
  a marker in it) is never read, whatever it holds.
- A file is parsed only when its bytes contain `"$imagepolicy"` with the double quotes
  (setters.go passes the token through %q); the rest is never parsed, so a Helm
  template or other non-YAML without that token costs nothing and fails nothing.
- A screened file that kyaml cannot read (kustomize kyaml/kio/byteio_reader.go: a YAML
  syntax error, a document whose top node is a list or a scalar) is recorded as a
  "problem file" and skipped, only a trace log line says so: the walk goes on.
  `scan_for_update` does the same and reports the skip, except when the file holds a
  marker naming a policy being set: Flux would never set that marker either, so the
  deploy could not happen; that is an error with file:line (see `UnreadFile`).
- Links: the walk uses Lstat, so a link to a directory is never descended; a link to
  a file is read through (os.ReadFile) and skipped when that read fails (dangling, or
  a directory). Flux would then write through it (kyaml/kio/pkgio_writer.go). gitopsctl
  never follows a link and never writes through one (issue 12): a link whose target
  lies in scope gives the same result, the target being edited under its own name;
  a link leaving the repository gives the same git result (Flux's write lands outside
  its checkout, no commit carries it); a dangling one is skipped by both. The one
  difference: a link in scope to a file in the repository but out of scope, which
  Flux edits through the link, is reported and left alone (bump the target's path).
- Every document of a multi-document file is set; only files with a change are
  written. Flux re-serialises them (CRLF becomes LF); here only the scalar changes.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

from gitopsctl import yamlsafe
from gitopsctl.errors import ExternalError, GitopsctlError, InputError, Location
from gitopsctl.fsutil import write_atomic
from gitopsctl.imageref import ImageReference

TOKEN = "$imagepolicy"
# What Flux screens a file's bytes for before it parses it: the token as a JSON string.
FLUX_TOKEN = f'"{TOKEN}"'
YAML_SUFFIXES = (".yaml", ".yml")
KUSTOMIZATION = "Kustomization"   # kustomize's other file name; Flux reads it too
NEVER_TRACKED = ".git"
FIELDS = ("image", "tag", "name", "digest")

# After a scalar ends, a line comment is blanks, '#', then the rest of the line.
_TRAILING_COMMENT = re.compile(r"[ \t]+#([^\r\n]*)")
_POLICY_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class Marker:
    """One marked scalar in one file. Offsets index the decoded text; line/column are 1-based."""

    file: str
    line: int
    column: int
    setter: str          # the marker's value as written, e.g. "flux-system:frontend:tag"
    policy: str          # "flux-system:frontend"
    field: str           # image | tag | name | digest
    value: str           # the scalar's current value
    style: str | None    # None (plain), "'" or '"'
    start: int
    end: int
    yaml_path: str       # e.g. spec.template.spec.containers[0].image
    document: int = 0

    @property
    def location(self) -> Location:
        return Location(self.file, self.line, self.column)


@dataclass(frozen=True)
class MalformedMarker:
    """A comment that mentions $imagepolicy but that Flux would not understand."""

    file: str
    line: int
    column: int
    comment: str
    reason: str


@dataclass(frozen=True)
class Change:
    marker: Marker
    new_value: str
    new_text: str        # what replaces text[marker.start:marker.end]

    @property
    def old_value(self) -> str:
        return self.marker.value

    def to_dict(self) -> dict:
        m = self.marker
        return {"file": m.file, "line": m.line, "column": m.column, "setter": m.setter,
                "policy": m.policy, "field": m.field, "yaml_path": m.yaml_path,
                "old": m.value, "new": self.new_value}


@dataclass(frozen=True)
class Skipped:
    """A marker for a policy we were given but with no value for its part (e.g. :digest)."""

    marker: Marker
    reason: str


@dataclass
class FileScan:
    path: Path
    display: str
    text: str
    markers: list[Marker] = field(default_factory=list)
    malformed: list[MalformedMarker] = field(default_factory=list)
    # (line, column, kind) of the first document whose top node is not a mapping
    not_a_resource: tuple[int, int, str] | None = None


class NotYaml(InputError):
    """Text that does not parse as YAML (syntax, an alias to nothing): Flux skips such a file."""


@dataclass
class FilePlan:
    scan: FileScan
    changes: list[Change]
    new_text: str

    @property
    def changed(self) -> bool:
        return self.new_text != self.scan.text


# ---------------------------------------------------------------- finding

def read_text(path: Path, display: str) -> str:
    """Decode without newline translation, so CRLF and a missing final newline survive.

    Bounded (yamlsafe.MAX_FILE_BYTES) and never through a symbolic link.
    """
    return yamlsafe.decode(yamlsafe.read_bytes(path, display, follow_links=False), display)


def read_if_marked(path: Path, display: str) -> str | None:
    """The decoded text, or None when Flux's screen (FLUX_TOKEN) would pass over the file.

    A file over the size limit is searched for the token in chunks: refused only when it
    is marked, so a big generated file in scope costs neither memory nor a failure.
    """
    try:
        size = os.lstat(path).st_size
    except OSError as exc:
        raise InputError(f"cannot read {display}: {exc.strerror or exc}",
                         location=Location(display)) from None
    if size > yamlsafe.MAX_FILE_BYTES:
        if not yamlsafe.contains(path, _TOKEN_BYTES, display):
            return None
        yamlsafe.check_size(size, display)
    data = yamlsafe.read_bytes(path, display, follow_links=False)
    return yamlsafe.decode(data, display) if _TOKEN_BYTES in data else None


_TOKEN_BYTES = FLUX_TOKEN.encode()  # bump reads what Flux's screen lets through


def scan_text(text: str, display: str, path: Path | None = None) -> FileScan:
    """Parse `text` and collect its markers. Raises InputError (file:line:column) on bad YAML.

    `text` may come from a file or a git blob: the hostile-input bounds (size, control
    characters, nesting depth, alias expansion; yamlsafe.HostileInput) apply here.
    """
    scan = FileScan(path=path or Path(display), display=display, text=text)
    if TOKEN not in text:  # Flux screens files the same way; it skips the parse for most files
        return scan
    yamlsafe.screen_text(text, display)  # size and characters; depth and aliases below
    offset = _bom_offset(text)
    roots: list[tuple[int, int, str]] = []
    for event, is_key, yaml_path, document in _scalar_events(text, display, roots):
        style = event.style or None  # libyaml says "" for plain, ruamel None
        if is_key or style not in (None, "'", '"'):
            continue  # keys and block scalars (| >) are never setter targets
        end = event.end_mark.index + offset
        comment = _TRAILING_COMMENT.match(text, end)
        if comment is None or TOKEN not in comment.group(1):
            continue
        start = _scalar_start(text, event.start_mark.index + offset, end)
        line, column = _line_column(text, start)
        setter, reason = _parse_marker_comment(comment.group(1))
        if setter is None:
            scan.malformed.append(MalformedMarker(display, line, column, comment.group(1).strip(),
                                                  reason))
            continue
        policy, part = setter
        scan.markers.append(Marker(
            file=display, line=line, column=column, setter=f"{policy}:{part}" if part != "image"
            else policy, policy=policy, field=part, value=event.value, style=style,
            start=start, end=end, yaml_path=yaml_path, document=document))
    scan.not_a_resource = roots[0] if roots else None
    return scan


def scan_file(path: Path, display: str | None = None) -> FileScan:
    display = display or str(path)
    return scan_text(read_text(path, display), display, path)


@dataclass(frozen=True)
class UnreadFile:
    """A screened file Flux's reader skips (a "problem file"), and so does the update."""

    file: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: not read, as Flux does not read it ({self.reason})"

    def to_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "reason": self.reason}


# A marker's setter as written, read from the raw text: the file may not parse at all.
_MARKER_TEXT = re.compile(r'"\$imagepolicy"\s*:\s*"([^"\r\n]*)"')


def scan_for_update(text: str, display: str, path: Path | None,
                    policies: Iterable[str]) -> FileScan | UnreadFile:
    """scan_text for bump and stage: a file Flux would skip is skipped, not fatal.

    Flux records a file that passed its screen but does not parse, and goes on
    (internal/update/filereader.go). Skipping it here keeps an unrelated broken file
    (a Helm template naming another policy, say) from stopping a deploy. But when the
    file holds a marker naming one of `policies`, Flux would never set that marker
    either: the new image would reach no manifest, so that is an error at the place
    the file breaks. Hostile input (yamlsafe.HostileInput) is always an error.
    """
    try:
        scan = scan_text(text, display, path)
    except NotYaml as exc:
        line = exc.location.line if exc.location else None
        column = exc.location.column if exc.location else None
        problem = exc.message
    else:
        if scan.not_a_resource is None:
            return scan
        line, column, kind = scan.not_a_resource
        problem = f"a document whose top level is {kind}, not a mapping"
    wanted = set(policies)
    for match in _MARKER_TEXT.finditer(text):
        policy = ":".join(match.group(1).split(":")[:2])
        if policy in wanted:
            marker_line = text.count("\n", 0, match.start()) + 1
            raise InputError(
                f"{problem}; the marker for {policy} on line {marker_line} cannot be set",
                location=Location(display, line, column),
                hint="Flux skips a file it cannot read, so neither it nor gitopsctl would set "
                     "this marker; fix the YAML at this position. No file was changed")
    return UnreadFile(display, line, problem)


def _parse_marker_comment(comment: str) -> tuple[tuple[str, str] | None, str]:
    """The comment text after '#' -> ((policy, field), "") or (None, why not)."""
    try:
        data = json.loads(comment.strip())
    except ValueError:
        return None, "the comment is not valid JSON"
    if not isinstance(data, dict) or not isinstance(data.get(TOKEN), str):
        return None, f'the JSON has no string "{TOKEN}" key'
    raw = data[TOKEN]
    parts = raw.split(":")
    if len(parts) == 2:
        (namespace, name), part = parts, "image"
    elif len(parts) == 3 and parts[2] in ("tag", "name", "digest"):
        namespace, name, part = parts
    else:
        return None, f"{raw!r} is not NAMESPACE:NAME[:tag|:name|:digest]"
    if not _POLICY_NAME.match(namespace) or not _POLICY_NAME.match(name.replace(".", "-")):
        return None, f"{raw!r} does not name a valid NAMESPACE:NAME"
    return (f"{namespace}:{name}", part), ""


def _parser_backend():
    """(parse(text) -> events, event module, YAMLError) of the fastest event parser.

    libyaml through PyYAML (a dependency of the kubernetes client) parses about fifty
    times faster than the pure-Python parser and reports the same character offsets;
    ruamel.yaml's parser is the fallback when libyaml is not compiled in.
    """
    global _BACKEND
    if _BACKEND is None:
        try:
            import yaml as pyyaml

            if not getattr(pyyaml, "__with_libyaml__", False):
                raise ImportError("PyYAML without libyaml")
            loader = pyyaml.CSafeLoader
            _BACKEND = (lambda text: pyyaml.parse(text, Loader=loader), pyyaml.events,
                        pyyaml.YAMLError)
        except ImportError:
            from ruamel.yaml import YAML, events
            from ruamel.yaml.error import YAMLError

            _BACKEND = (lambda text: YAML(typ="safe", pure=True).parse(text), events, YAMLError)
    return _BACKEND


_BACKEND = None


def _scalar_events(text: str, display: str, roots: list | None = None
                   ) -> Iterator[tuple[object, bool, str, int]]:
    """(scalar event, is a mapping key, path of the value, document index) for every scalar.

    Marks index `text`; a leading byte-order mark is not part of the parsed stream, so
    callers add `_bom_offset(text)` to offsets. `roots` receives (line, column, kind) of
    each document whose top node is a list or a non-null scalar: kyaml's reader cannot
    annotate such a node, so Flux skips the whole file (kio.ByteReader.decode).
    """
    parse, ev, yaml_error = _parser_backend()
    # frame: [is_mapping, expecting_key, current_key_or_index, path_prefix]
    stack: list[list] = []
    anchors: set[str] = set()
    document = -1

    def child_path() -> str:
        if not stack:
            return ""
        is_map, _, key, prefix = stack[-1]
        if is_map:
            return f"{prefix}.{key}" if prefix else str(key)
        return f"{prefix}[{key}]"

    def node_done(key_value: object = "?") -> None:
        if not stack:
            return
        frame = stack[-1]
        if frame[0]:
            if frame[1]:
                frame[1], frame[2] = False, key_value
            else:
                frame[1] = True
        else:
            frame[2] += 1

    try:
        for event in yamlsafe.bounded(parse(text[_bom_offset(text):]), display):
            if isinstance(event, ev.DocumentStartEvent):
                document += 1
                stack.clear()
                continue
            is_key = bool(stack and stack[-1][0] and stack[-1][1])
            anchor = getattr(event, "anchor", None)
            if not stack and roots is not None:
                kind = _root_kind(event, ev)
                if kind is not None:
                    mark = event.start_mark
                    roots.append((mark.line + 1, mark.column + 1, kind))
            if isinstance(event, ev.AliasEvent):
                if event.anchor not in anchors:
                    mark = event.start_mark
                    raise NotYaml(f"alias *{event.anchor} refers to no anchor defined before it",
                                  location=Location(display, mark.line + 1, mark.column + 1),
                                  hint=f"define &{event.anchor} earlier in the document")
                node_done()
            elif isinstance(event, ev.ScalarEvent):
                if anchor:
                    anchors.add(anchor)
                yield event, is_key, child_path(), max(document, 0)
                node_done(event.value)
            elif isinstance(event, (ev.MappingStartEvent, ev.SequenceStartEvent)):
                if anchor:
                    anchors.add(anchor)
                is_map = isinstance(event, ev.MappingStartEvent)
                stack.append([is_map, True, "?" if is_map else 0, child_path()])
            elif isinstance(event, ev.CollectionEndEvent):
                if stack:
                    stack.pop()
                node_done()
    except yaml_error as exc:
        refused = yamlsafe.parser_limit(exc, display)
        if refused is not None:
            raise refused from None
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        location = Location(display, mark.line + 1, mark.column + 1) if mark else Location(display)
        problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or "invalid YAML"
        raise NotYaml(f"not valid YAML: {problem}", location=location,
                      hint="fix the YAML at this position; no file was changed") from None


_NULLS = ("", "~", "null", "Null", "NULL")


def _root_kind(event, ev) -> str | None:
    """'a list' or 'a scalar' for a document's top node kyaml refuses; None otherwise."""
    if isinstance(event, ev.SequenceStartEvent):
        return "a list"
    if isinstance(event, ev.ScalarEvent) and not (
            (event.style or None) is None and event.value in _NULLS):
        return "a scalar"
    return None


def _bom_offset(text: str) -> int:
    return 1 if text.startswith("\ufeff") else 0


def _scalar_start(text: str, start: int, end: int) -> int:
    """Skip an anchor (&a) and tag (!t) that the parser counts as part of the scalar event."""
    pos = start
    while pos < end and text[pos] in "&!":
        while pos < end and not text[pos].isspace():
            pos += 1
        while pos < end:
            if text[pos].isspace():
                pos += 1
            elif text[pos] == "#":  # a comment between properties and the value
                while pos < end and text[pos] not in "\r\n":
                    pos += 1
            else:
                break
    return pos


def _line_column(text: str, index: int) -> tuple[int, int]:
    line_start = text.rfind("\n", 0, index) + 1
    column = index - line_start + 1 - (_bom_offset(text) if line_start == 0 else 0)
    return text.count("\n", 0, index) + 1, column


# ---------------------------------------------------------------- editing

def setter_value(ref: ImageReference, part: str) -> str | None:
    """What Flux writes for each kind of marker; None when the reference has no such part."""
    if part == "image":
        return str(ref)
    if part == "tag":
        return ref.tag
    if part == "name":
        return ref.name
    if part == "digest":
        return ref.digest
    raise ValueError(part)


def render_scalar(value: str, style: str | None) -> str:
    """The source text for `value` in the marker's quoting style.

    A plain scalar stays plain unless the new text would read back as a number, bool or
    null (a tag like `1.10`); then it is double-quoted, because keeping the style would
    change the value's type.
    """
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    if style == '"':
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if not _plain_safe(value):
        return render_scalar(value, '"')
    return value


_NON_STRING_PLAIN = re.compile(
    r"""^(?:~|null|Null|NULL|y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE
    |on|On|ON|off|Off|OFF
    |[-+]?(?:0|[1-9][0-9_]*)|0[0-9_]+|0o[0-7]+|0x[0-9a-fA-F_]+|0b[01_]+
    |[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*(?:[eE][-+]?[0-9]+)
    |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)
    |[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?)$""", re.VERBOSE)


def _plain_safe(value: str) -> bool:
    """True when `value` written plain reads back as this same string (YAML 1.1 and 1.2)."""
    if not value or value != value.strip() or _NON_STRING_PLAIN.match(value):
        return False
    if value[0] in "-?:,[]{}#&*!|>'\"%@`":
        return False
    return not any(s in value for s in (": ", " #", "\n", "\r", "\t", ",", "[", "]", "{", "}"))


def plan_file(scan: FileScan, values: Mapping[str, ImageReference]) -> tuple[FilePlan, list[Skipped]]:
    """Changes for every marker naming a policy in `values`; nothing is written."""
    changes: list[Change] = []
    skipped: list[Skipped] = []
    for marker in scan.markers:
        ref = values.get(marker.policy)
        if ref is None:
            continue
        new_value = setter_value(ref, marker.field)
        if new_value is None:
            skipped.append(Skipped(marker, f"the new value {ref} has no {marker.field}"))
            continue
        if new_value == marker.value:
            continue
        changes.append(Change(marker, new_value, render_scalar(new_value, marker.style)))
    return FilePlan(scan, changes, splice(scan.text, changes)), skipped


def splice(text: str, changes: Sequence[Change]) -> str:
    """Replace each change's span; spans never overlap (one scalar each)."""
    out: list[str] = []
    pos = 0
    for change in sorted(changes, key=lambda c: c.marker.start):
        out.append(text[pos:change.marker.start])
        out.append(change.new_text)
        pos = change.marker.end
    out.append(text[pos:])
    return "".join(out)


# ---------------------------------------------------------------- files

@dataclass(frozen=True)
class SkippedLink:
    """A symbolic link in scope that was not followed, and why."""

    path: str        # as displayed: relative to the repository when inside it
    target: str      # what the link says (os.readlink)
    reason: str

    def to_dict(self) -> dict:
        return {"file": self.path, "target": self.target, "reason": self.reason}


def flux_reads(name: str) -> bool:
    """Whether Flux's setter reader reads a file of this name (filereader.go's filter).

    `endswith` is filepath.Ext's test: the text after the last dot, so `.yaml` itself
    matches and `x.YAML` or `x.yaml.bak` do not.
    """
    return name.endswith(YAML_SUFFIXES) or name == KUSTOMIZATION


def walks_into(name: str) -> bool:
    """Every directory but .git, which git never tracks (see the module docstring)."""
    return name != NEVER_TRACKED


def tree_selected(path: str, scope: Sequence[str]) -> bool:
    """select_yaml's rule on a repo-relative, "/"-separated path from a git tree.

    `scope` is what the tree was listed under (service_scope): a path named there
    exactly is taken whatever its name, as select_yaml takes a file named in `paths`.
    """
    if path in scope:
        return True
    *directories, name = path.split("/")
    return flux_reads(name) and all(walks_into(d) for d in directories)


def tree_link_reason(link: str, target: str, selected: Iterable[str]) -> str | None:
    """Why a link in a git tree is reported (as `_link_reason` words it), or None.

    `target` is the link's blob (what readlink says); `selected` the regular files the
    scan reads. Resolved on paths alone: a tree has no working copy to follow.
    """
    if target.startswith("/"):
        return "link leaving the repository: not followed, not edited"
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(link), target))
    if resolved == ".." or resolved.startswith("../"):
        return "link leaving the repository: not followed, not edited"
    if resolved in set(selected):
        return None
    return ("link to a file outside the scanned paths, or dangling: not followed; "
            "bump the target's path")


@dataclass
class Selection:
    files: list[Path]                 # regular files Flux reads (flux_reads), absolute, sorted
    links: list[SkippedLink] = field(default_factory=list)


def select_yaml(paths: Iterable[Path], root: Path | None = None) -> Selection:
    """Every regular file Flux reads at or under `paths`, never through a symbolic link.

    Names and directories as `flux_reads` and `walks_into` say. A file named in
    `paths` is taken whatever its name: that is a VM's compose file, which Flux never
    reads, or a file a user passed on purpose (`bump --path`).

    A link is never a file to edit (issue 12; how this compares with Flux, which reads
    and writes through a file link, is in the module docstring): a link to a file in
    scope is skipped because its target is scanned where it lives; a link leaving the
    repository (`root`, default: the enclosing git checkout), a dangling one, or one to
    a target outside the scanned paths is skipped and listed in `links` with the
    reason. Writing through the link, or replacing it with a regular file, would edit a
    file nobody asked to edit or change the link's git mode (120000 -> 100644).
    """
    given = [Path(os.path.abspath(p)) for p in paths]
    base = Path(os.path.abspath(root)) if root is not None else _repo_root(given)
    real_base = os.path.realpath(base)
    found: set[str] = set()
    links: dict[str, tuple[Path, str]] = {}   # display -> (link, kind: file | directory)
    scopes: list[str] = []
    for path in given:
        link = _first_link(path, base)
        if link is not None:
            links.setdefault(str(link), (link, "path"))
            continue
        if os.path.isfile(path):
            found.add(str(path))
            scopes.append(str(path))
            continue
        if not os.path.isdir(path):
            raise InputError(f"{path} does not exist", location=Location(str(path)),
                             hint="pass a directory or file inside the repository")
        scopes.append(os.path.realpath(path))
        _walk(str(path), found, links)
    skipped = []
    for key in sorted(links):
        link, _ = links[key]
        reason = _link_reason(link, real_base, scopes)
        if reason is not None:
            skipped.append(SkippedLink(_shown(link, base), _readlink(link), reason))
    return Selection([Path(p) for p in sorted(found)], skipped)


def yaml_files(paths: Iterable[Path], root: Path | None = None) -> list[Path]:
    """select_yaml's files only."""
    return select_yaml(paths, root).files


def _walk(top: str, found: set[str], links: dict[str, tuple[Path, str]]) -> None:
    """Iterative scandir walk that neither follows nor descends into links."""
    pending = [top]
    while pending:
        directory = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            raise InputError(f"cannot list {directory}: {exc.strerror or exc}",
                             location=Location(directory)) from None
        for entry in entries:
            if entry.is_symlink():
                if flux_reads(entry.name) or os.path.isdir(entry.path):
                    links.setdefault(entry.path, (Path(entry.path), "entry"))
            elif entry.is_dir(follow_symlinks=False):
                if walks_into(entry.name):
                    pending.append(entry.path)
            elif flux_reads(entry.name) and entry.is_file(follow_symlinks=False):
                found.add(entry.path)


def _first_link(path: Path, base: Path) -> Path | None:
    """The first component of `path` below `base` that is a link (only `path` if outside)."""
    try:
        parts = path.relative_to(base).parts
    except ValueError:
        return path if os.path.islink(path) else None
    current = base
    for part in parts:
        current = current / part
        if os.path.islink(current):
            return current
    return None


def _link_reason(link: Path, real_base: str, scopes: Sequence[str]) -> str | None:
    """Why a link is reported, or None when its target is scanned on its own."""
    target = os.path.realpath(link)
    if not os.path.exists(target):
        return "dangling link: its target does not exist; links are never followed"
    if not _inside(target, real_base):
        return "link leaving the repository: not followed, not edited"
    if any(_inside(target, scope) for scope in scopes):
        return None
    return "link to a file outside the scanned paths: not followed; bump the target's path"


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def _repo_root(paths: Sequence[Path]) -> Path:
    from gitopsctl.config import find_repo_root

    start = paths[0] if paths else Path(os.getcwd())
    return find_repo_root(start) or (start if os.path.isdir(start) else start.parent)


def _readlink(link: Path) -> str:
    try:
        return os.readlink(link)
    except OSError:
        return "?"


def _shown(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def service_paths(config, service: str | None, root: Path) -> list[Path]:
    """Where the markers of a configured service live (absolute).

    Its `paths` from gitopsctl.yaml, plus the compose file for a VM service (its image
    is bumped there). No config: clusters/ under `root`; no service: every service's.
    """
    if config is None:
        return [root / "clusters"]
    if service is None:
        return [config.resolve(p) for s in config.services.values() for p in s.paths]
    return [config.resolve(p) for p in service_scope(config, service)]


def service_scope(config, service: str) -> list[str]:
    """service_paths of one service, repo-relative and "/"-separated, as git names them."""
    svc = config.service(service)
    scope = [_repo_relative(p) for p in svc.paths]
    target = config.target_of(service)
    if target.kind == "vm":
        compose = _repo_relative(target.compose_file)
        if not any(compose == p or p == "." or compose.startswith(p + "/") for p in scope):
            scope.append(compose)
    return scope


def _repo_relative(path: str) -> str:
    return posixpath.normpath(path.replace("\\", "/"))


def write_plans(plans: Sequence[FilePlan]) -> None:
    """Write every changed file; if one write fails, put back those already written."""
    done: list[FilePlan] = []
    for plan in plans:
        if not plan.changed:
            continue
        try:
            write_atomic(plan.scan.path, plan.new_text, expected=plan.scan.text)
        except (OSError, GitopsctlError) as exc:
            for written in done:
                try:
                    write_atomic(written.scan.path, written.scan.text)
                except (OSError, GitopsctlError):
                    pass
            if isinstance(exc, GitopsctlError):
                raise
            raise ExternalError(f"cannot write {plan.scan.display}: {exc.strerror or exc}",
                                hint="check permissions and free space; files already written "
                                     "were put back") from None
        done.append(plan)
