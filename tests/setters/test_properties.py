"""Property: a bump changes the marked scalars and not one other character.

The generator writes YAML documents piece by piece in many layouts (block and flow
collections, three quoting styles, anchors and aliases, comments, blank lines, document
markers, CRLF, with or without a final newline, decoy marker text inside strings and
comments) and knows the data each document means. Marked scalars are slots: rendered
with the old value for the input and with the new value for the expected output, in the
same style. The bump must produce exactly that text, and the result must load to the
same data with only the marked values replaced.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from ruamel.yaml import YAML

from gitopsctl import setters
from gitopsctl.imageref import ImageReference
from gitopsctl.setters import plan_file, scan_text

POLICY = "flux-system:frontend"
OTHER = "flux-system:backend"
DECOY = '# {"$imagepolicy": "flux-system:frontend"}'

_word = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_./", min_size=1, max_size=12)
_plain = _word.map(lambda w: "v" + w.rstrip("."))          # never a number/bool, never ends ':'
_quoted_text = st.text("abc xyz:#{}\"'$\\-,[]", max_size=14)
_tag = st.from_regex(r"\Av[a-z0-9][a-z0-9._-]{0,15}\Z")
_digest = st.from_regex(r"\A[0-9a-f]{64}\Z").map(lambda h: "sha256:" + h)
_host = st.sampled_from(["harbor.lan", "127.0.0.1:5000", "registry.example.org"])
_repo = st.from_regex(r"\A[a-z0-9]{1,6}(/[a-z0-9]{1,6}){0,2}\Z")


@dataclass
class Slot:
    """A marked scalar: its style, old and new value, and where it sits in the data."""

    style: str | None
    old: str
    new: str
    doc: int
    path: tuple


def render(value: str, style: str | None) -> str:
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    if style == '"':
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


class Writer:
    def __init__(self, draw, new_ref: ImageReference):
        self.draw = draw
        self.new_ref = new_ref
        self.pieces: list[str | Slot] = []
        self.anchors: dict[str, object] = {}
        self.counter = 0
        self.doc = 0

    def emit(self, text: str) -> None:
        self.pieces.append(text)

    def scalar(self) -> tuple[str, object]:
        """(source text, value) of an ordinary scalar, maybe anchored or an alias."""
        draw = self.draw
        kind = draw(st.sampled_from(["plain", "single", "double", "int", "alias", "decoy"]))
        if kind == "alias" and self.anchors:
            name = draw(st.sampled_from(sorted(self.anchors)))
            return f"*{name}", self.anchors[name]
        if kind == "int":
            number = draw(st.integers(-1000, 1000))
            return str(number), number
        if kind == "decoy":  # marker text inside a string is not a marker
            return "'x " + DECOY.replace("'", "''") + "'", "x " + DECOY
        if kind == "single":
            value = draw(_quoted_text)
            text = render(value, "'")
        elif kind == "double":
            value = draw(_quoted_text)
            text = render(value, '"')
        else:
            value = draw(_plain)
            text = value
        if draw(st.booleans()) and draw(st.booleans()):
            self.counter += 1
            name = f"a{self.counter}"
            self.anchors[name] = value
            text = f"&{name} {text}"
        return text, value

    def slot_value(self) -> tuple[str, str, str]:
        """(field, old, new) for a marker of a random kind."""
        draw = self.draw
        field = draw(st.sampled_from(["image", "tag", "name"] + (["digest"] if self.new_ref.digest
                                                                   else [])))
        old_ref = ImageReference(draw(_host), draw(_repo), draw(_tag), None)
        old = {"image": str(old_ref), "tag": old_ref.tag, "name": old_ref.name,
               "digest": draw(_digest)}[field]
        new = {"image": str(self.new_ref), "tag": self.new_ref.tag, "name": self.new_ref.name,
               "digest": self.new_ref.digest}[field]
        return field, old, new

    def marked(self, path: tuple) -> object:
        draw = self.draw
        field, old, new = self.slot_value()
        style = draw(st.sampled_from([None, "'", '"']))
        policy = POLICY if draw(st.integers(0, 4)) else OTHER
        suffix = "" if field == "image" else f":{field}"
        if draw(st.booleans()) and draw(st.booleans()):
            self.counter += 1
            self.emit(f"&m{self.counter} ")  # anchored, never aliased
        if draw(st.booleans()) and draw(st.booleans()):
            self.emit("!!str ")
        if policy == POLICY:
            self.pieces.append(Slot(style, old, new, self.doc, path))
        else:
            self.emit(render(old, style))
        spaces = " " * draw(st.integers(1, 3))
        compact = draw(st.booleans()) and draw(st.booleans())
        marker = (f'#{{"$imagepolicy":"{policy}{suffix}"}}' if compact
                  else f'# {{"$imagepolicy": "{policy}{suffix}"}}')
        self.emit(spaces + marker)
        return old

    def comment_or_blank(self, indent: int) -> None:
        choice = self.draw(st.integers(0, 6))
        if choice == 0:
            self.emit("\n")
        elif choice == 1:
            self.emit(" " * indent + "# a comment\n")
        elif choice == 2:
            self.emit(" " * indent + DECOY + "\n")

    def trailing_comment(self) -> None:
        if self.draw(st.integers(0, 3)) == 0:
            self.emit("  # note")

    def flow(self) -> tuple[str, object]:
        draw = self.draw
        if draw(st.booleans()):
            items = draw(st.lists(_plain, max_size=3))
            return "[" + ", ".join(items) + "]", list(items)
        keys = draw(st.lists(_plain, max_size=3, unique=True))
        values = [draw(st.integers(0, 9)) for _ in keys]
        return "{" + ", ".join(f"{k}: {v}" for k, v in zip(keys, values)) + "}", dict(zip(keys, values))

    def mapping(self, indent: int, depth: int, path: tuple) -> dict:
        draw = self.draw
        data: dict = {}
        keys = draw(st.lists(_plain, min_size=1, max_size=4, unique=True))
        for key in keys:
            self.comment_or_blank(indent)
            key_text = draw(st.sampled_from([key, f"'{key}'", f'"{key}"']))
            self.emit(" " * indent + key_text + ":")
            data[key] = self.value(indent, depth, path + (key,), in_sequence=False)
        return data

    def sequence(self, indent: int, depth: int, path: tuple) -> list:
        draw = self.draw
        data: list = []
        for i in range(draw(st.integers(1, 3))):
            self.comment_or_blank(indent)
            self.emit(" " * indent + "-")
            data.append(self.value(indent, depth, path + (i,), in_sequence=True))
        return data

    def value(self, indent: int, depth: int, path: tuple, *, in_sequence: bool) -> object:
        draw = self.draw
        options = ["scalar", "marked", "flow"] + (["mapping", "sequence"] if depth < 3 else [])
        kind = draw(st.sampled_from(options))
        if kind == "scalar":
            text, value = self.scalar()
            self.emit(" " + text)
            self.trailing_comment()
            self.emit("\n")
            return value
        if kind == "marked":
            self.emit(" ")
            value = self.marked(path)
            self.emit("\n")
            return value
        if kind == "flow":
            text, value = self.flow()
            self.emit(" " + text)
            self.trailing_comment()
            self.emit("\n")
            return value
        self.trailing_comment()
        self.emit("\n")
        child_indent = indent + 2
        if kind == "mapping":
            return self.mapping(child_indent, depth + 1, path)
        # an indentless sequence under a mapping key is allowed in block style
        if not in_sequence and draw(st.booleans()):
            child_indent = indent
        return self.sequence(child_indent, depth + 1, path)


@st.composite
def documents(draw):
    new_ref = ImageReference(draw(_host), draw(_repo), draw(_tag),
                             draw(st.one_of(st.none(), _digest)))
    writer = Writer(draw, new_ref)
    data_docs = []
    for index in range(draw(st.integers(1, 3))):
        writer.doc = index
        writer.anchors = {}  # anchors do not cross documents
        if index or draw(st.booleans()):
            writer.emit("---" + draw(st.sampled_from(["", " # doc"])) + "\n")
        if draw(st.booleans()):
            data_docs.append(writer.mapping(0, 0, ()))
        else:
            data_docs.append(writer.sequence(0, 0, ()))
        if draw(st.integers(0, 3)) == 0:
            writer.emit("...\n")
    crlf = draw(st.booleans())
    final_newline = draw(st.booleans())
    return writer.pieces, data_docs, new_ref, crlf, final_newline


def join(pieces, new: bool, crlf: bool, final_newline: bool) -> str:
    text = "".join(p if isinstance(p, str) else render(p.new if new else p.old, p.style)
                   for p in pieces)
    if not final_newline:
        text = text.rstrip("\n")
    return text.replace("\n", "\r\n") if crlf else text


def load_all(text: str) -> list:
    return list(YAML(typ="safe", pure=True).load_all(text))


def set_path(doc, path: tuple, value) -> None:
    for part in path[:-1]:
        doc = doc[part]
    doc[path[-1]] = value


@pytest.fixture(params=["libyaml", "ruamel"])
def parser_backend(request):
    """Both event parsers setters can use must locate the same spans."""
    saved = setters._BACKEND
    setters._BACKEND = None
    if request.param == "ruamel":
        from ruamel.yaml import YAML as _YAML, events
        from ruamel.yaml.error import MarkedYAMLError

        setters._BACKEND = (lambda text: _YAML(typ="safe", pure=True).parse(text), events,
                            MarkedYAMLError)
    else:
        import yaml

        assert yaml.__with_libyaml__, "PyYAML here is built without libyaml"
    yield request.param
    setters._BACKEND = saved


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(generated=documents())
def test_only_the_marked_scalars_change(parser_backend, generated):
    pieces, data_docs, new_ref, crlf, final_newline = generated
    slots = [p for p in pieces if isinstance(p, Slot)]
    old_text = join(pieces, False, crlf, final_newline)
    expected_text = join(pieces, True, crlf, final_newline)
    assert load_all(old_text) == data_docs  # the generator means what it writes

    scan = scan_text(old_text, "gen.yaml")
    mine = [m for m in scan.markers if m.policy == POLICY]
    assert len(mine) == len(slots)
    assert not scan.malformed
    plan, skipped = plan_file(scan, {POLICY: new_ref})
    assert not skipped
    assert plan.new_text == expected_text

    expected_docs = load_all(old_text)
    for slot in slots:
        set_path(expected_docs[slot.doc], slot.path, slot.new)
    assert load_all(plan.new_text) == expected_docs

    # a second bump with the same value is a no-op
    again, _ = plan_file(scan_text(plan.new_text, "gen.yaml"), {POLICY: new_ref})
    assert not again.changes and again.new_text == plan.new_text
