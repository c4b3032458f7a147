"""A CI job summary in Markdown, made from the JSON documents gitopsctl commands printed.

The pipeline keeps each command's `--output json` document in a file named after the
command (build.json, stage.json); this module reads them back and says, in one page, how
the run ended: the verdict, each command's exit code and what it means (errors.EXIT_MEANINGS,
the one table of them), the steps with their timings, the commits pushed, why a rollback
happened and what it did, and the documents themselves in collapsed blocks.

    read_record(path)   -> CommandRecord   a missing file is a command that never ran
    verdict(records)    -> str             deployed, rolled-back, ..., "build failed, ..."
    render(records)     -> str             the Markdown
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from gitopsctl.errors import EXIT_MEANINGS


@dataclass(frozen=True)
class CommandRecord:
    name: str                    # the file's stem: the command that wrote it
    path: str
    document: dict | None        # None: the file is missing or holds no JSON document
    problem: str = ""            # why there is no document, when the file exists

    @property
    def ran(self) -> bool:
        return self.document is not None or bool(self.problem)

    @property
    def exit_code(self) -> int | None:
        """From the document: its exit_code, its error's, or 0 for `ok: true`."""
        doc = self.document or {}
        for value in (doc.get("exit_code"), (doc.get("error") or {}).get("exit_code")):
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return 0 if doc.get("ok") is True else None


def read_record(path: Path) -> CommandRecord:
    name = path.name.removesuffix(".json")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return CommandRecord(name, str(path), None)
    except OSError as exc:
        return CommandRecord(name, str(path), None, f"cannot read {path}: {exc.strerror}")
    try:
        doc = json.loads(text)
    except ValueError:
        # killed mid-run, or a crash before the JSON was printed
        return CommandRecord(name, str(path), None,
                             f"{path} holds no JSON document ({len(text)} bytes)")
    if not isinstance(doc, dict):
        return CommandRecord(name, str(path), None, f"{path} holds no JSON object")
    return CommandRecord(name, str(path), doc)


def meaning(code: int | None) -> str:
    if code is None:
        return "unknown: the command left no exit code"
    return EXIT_MEANINGS.get(code, f"exit {code}, not one gitopsctl documents")


def verdict(records: Sequence[CommandRecord]) -> str:
    """The deploy's outcome as stage named it, or which command stopped the run first."""
    for rec in records:
        if not rec.ran:
            continue
        doc = rec.document or {}
        if doc.get("outcome"):
            return str(doc["outcome"])
        if rec.problem:
            return f"{rec.name} left no result, nothing known to be deployed"
        if rec.exit_code != 0:
            return f"{rec.name} failed, nothing deployed"
    return "not deployed"


def render(records: Sequence[CommandRecord]) -> str:
    lines = [_heading(records), "", "| command | exit | meaning | result | time |",
             "|---|---|---|---|---|"]
    for rec in records:
        lines.append(_command_row(rec))
    for rec in records:
        lines += _steps_table(rec)
    lines += _commits(records)
    for rec in records:
        lines += _rollback(rec)
    lines += _hints(records)
    for rec in records:
        if rec.document is not None:
            lines += ["", f"<details><summary>{rec.name} (JSON)</summary>", "", "```json",
                      json.dumps(rec.document, indent=2, default=str).replace("```", "` ` `"),
                      "```", "</details>"]
    return "\n".join(lines) + "\n"


def _heading(records: Sequence[CommandRecord]) -> str:
    sources = [str(r.document["source"]) for r in records
               if r.document and isinstance(r.document.get("source"), str)]
    of = f" of `{cell(sources[0][:7])}`" if sources else ""
    return f"## gitopsctl deploy{of}: {cell(verdict(records))}"


def _command_row(rec: CommandRecord) -> str:
    if not rec.ran:
        return f"| {cell(rec.name)} | - | not run | | |"
    if rec.problem:
        return f"| {cell(rec.name)} | - | {cell(meaning(None))} | {cell(rec.problem)} | |"
    doc = rec.document or {}
    code = rec.exit_code
    return (f"| {cell(rec.name)} | {'-' if code is None else code} | {cell(meaning(code))} "
            f"| {cell(_result_text(doc))} | {_seconds(doc.get('elapsed_seconds'))} |")


def _result_text(doc: dict) -> str:
    error = doc.get("error") or {}
    if doc.get("outcome"):
        text = str(doc["outcome"])
        return f"{text}: {error['message']}" if error.get("message") else text
    if error.get("message"):
        return str(error["message"])
    images = doc.get("images")
    if isinstance(images, dict):
        return ", ".join(f"{name} `{(image or {}).get('reference')}`"
                         for name, image in images.items()) or "no images"
    return str(doc.get("message") or "")


def _steps_table(rec: CommandRecord) -> list[str]:
    doc = rec.document or {}
    steps = [s for s in doc.get("steps") or [] if isinstance(s, dict)]
    images = doc.get("images") if isinstance(doc.get("images"), dict) else {}
    if not steps and not images:
        return []
    out = ["", f"### {cell(rec.name)}", "", "| step | status | time | detail |", "|---|---|---|---|"]
    for step in steps:
        out.append(f"| {cell(step.get('name'))} | {cell(step.get('status'))} "
                   f"| {_seconds(step.get('elapsed_seconds'))} | {cell(step.get('detail'))} |")
    for name, image in images.items():
        image = image or {}
        cached = f", {image.get('cached_steps')}/{image.get('steps')} steps cached" \
            if image.get("steps") else ""
        out.append(f"| build {cell(name)} | ok | {_seconds(image.get('build_seconds'))} "
                   f"| {cell(image.get('reference'))}{cell(cached)} |")
        if doc.get("pushed"):
            out.append(f"| push {cell(name)} | ok | {_seconds(image.get('push_seconds'))} "
                       f"| {cell(image.get('digest'))} |")
    return out


def _commits(records: Sequence[CommandRecord]) -> list[str]:
    shas = []
    for rec in records:
        doc = rec.document or {}
        shas += [(rec.name, str(sha)) for sha in doc.get("commits") or []]
        rollback = doc.get("rollback") or {}
        if rollback.get("commit"):
            shas.append((f"{rec.name} (revert)", str(rollback["commit"])))
    if not shas:
        return []
    return ["", "Commits pushed: " + ", ".join(f"`{cell(sha[:12])}` ({cell(name)})"
                                               for name, sha in shas)]


def _rollback(rec: CommandRecord) -> list[str]:
    doc = rec.document or {}
    if doc.get("outcome") not in ("rolled-back", "rollback-failed"):
        return []
    out = ["", f"### {cell(rec.name)}: why it rolled back", ""]
    failed = [s for s in doc.get("steps") or []
              if isinstance(s, dict) and s.get("status") == "failed" and s.get("name") != "rollback"]
    for step in failed[:1]:
        out.append(f"- reason: {cell(step.get('name'))}: {cell(step.get('detail'))}")
    rollback = doc.get("rollback") or {}
    for item in rollback.get("reverted") or []:
        if isinstance(item, dict):
            out.append(f"- reverted `{cell(str(item.get('commit', ''))[:12])}` "
                       f"({cell(item.get('service'))})")
    if rollback:
        verified = {True: "the previous version is healthy again",
                    False: "the previous version is NOT healthy", None: "not verified"}
        out.append(f"- after the revert: {verified.get(rollback.get('verified'), 'not verified')}")
    for rollback_step in [s for s in doc.get("steps") or []
                          if isinstance(s, dict) and s.get("name") == "rollback"
                          and s.get("status") == "failed"]:
        out.append(f"- the rollback failed: {cell(rollback_step.get('detail'))}")
    out += [f"- note: {cell(note)}" for note in rollback.get("notes") or []]
    return out


def _hints(records: Sequence[CommandRecord]) -> list[str]:
    hints = []
    for rec in records:
        doc = rec.document or {}
        for error in (doc.get("error") or {}, (doc.get("rollback") or {}).get("error") or {}):
            if isinstance(error, dict) and error.get("hint"):
                hints.append(f"- {cell(rec.name)}: hint: {cell(error['hint'])}")
    return ["", *hints] if hints else []


def cell(value: Any) -> str:
    """Text that stays inside one Markdown table cell and one line."""
    if value is None:
        return ""
    return " ".join(str(value).split()).replace("|", "\\|")


def _seconds(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.1f}s"
    return ""
