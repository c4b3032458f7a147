"""`gitopsctl summary`: the job summary's Markdown, from documents the real result classes
write (StageResult, RollbackResult, BuildResult), so a change in their JSON shows up here.

Fast and offline; test_deploy_workflow.py reads the same Markdown off real act runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gitopsctl.build.results import BuildResult, ServiceBuild
from gitopsctl.commands import Context
from gitopsctl.commands.summary import summary
from gitopsctl.deploy.rollback import RollbackResult
from gitopsctl.deploy.steps import StageResult, Step
from gitopsctl.errors import EXIT_MEANINGS, ConfigError, InputError
from gitopsctl.summary import cell, read_record, render, verdict

SOURCE = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"
D1 = "d1" * 20
REVERT = "e5" * 20


def _build_doc() -> dict:
    images = {name: ServiceBuild(name, f"registry.lan/homelab/{name}", [f"main-1a2b3c4-{n}"],
                                 f"examples/{name}", digest=f"sha256:{name[0] * 64}",
                                 build_seconds=3.25 * n, push_seconds=1.5, steps=4, cached_steps=n)
              for n, name in enumerate(("frontend", "backend"), start=1)}
    doc = BuildResult(SOURCE, pushed=True, images=images, elapsed=12.34).to_dict()
    return {**doc, "ok": True}  # as the CLI prints it


def _stage_doc(outcome: str = "deployed") -> dict:
    result = StageResult(SOURCE, outcome=outcome, elapsed=41.06, commits=[D1])
    result.steps = [Step("sync with remote", "ok", 0.21, "origin/main at 9f8e7d6"),
                    Step("bump frontend", "ok", 0.5, f"commit {D1[:7]}"),
                    Step("frontend healthy", "ok", 30.0, "2 healthy samples")]
    if outcome == "rolled-back":
        result.steps[-1] = Step("frontend healthy", "failed", 61.2,
                                "frontend CrashLoopBackOff | restarts 3\nlast log: boom")
        result.steps.append(Step("rollback", "ok", 5.0, f"revert {REVERT[:7]}"))
        result.rollback = RollbackResult(SOURCE, [{"commit": D1, "service": "frontend",
                                                   "image": "registry.lan/homelab/frontend:x"}],
                                         commit=REVERT, verified=True,
                                         notes=["Flux reconciled the revert in 4 s"])
        result.exit_code = 1
    doc = result.to_dict()
    return {**doc, "ok": result.exit_code == 0}


def _write(tmp_path: Path, name: str, doc: dict | str) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def _row(markdown: str, first: str) -> list[str]:
    for line in markdown.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in:\n{markdown}")


def test_a_deploy_names_the_outcome_the_commands_steps_timings_and_commits(tmp_path):
    records = [read_record(_write(tmp_path, "build", _build_doc())),
               read_record(_write(tmp_path, "stage", _stage_doc()))]
    md = render(records)
    assert md.startswith("## gitopsctl deploy of `1a2b3c4`: deployed\n")
    assert _row(md, "build") == [
        "build", "0", EXIT_MEANINGS[0],
        "frontend `registry.lan/homelab/frontend:main-1a2b3c4-1@sha256:" + "f" * 64 + "`, "
        "backend `registry.lan/homelab/backend:main-1a2b3c4-2@sha256:" + "b" * 64 + "`", "12.3s"]
    assert _row(md, "stage") == ["stage", "0", "success", "deployed", "41.1s"]
    assert _row(md, "build backend") == [
        "build backend", "ok", "6.5s",
        "registry.lan/homelab/backend:main-1a2b3c4-2@sha256:" + "b" * 64 + ", 2/4 steps cached"]
    assert _row(md, "bump frontend") == ["bump frontend", "ok", "0.5s", f"commit {D1[:7]}"]
    assert _row(md, "frontend healthy")[1:3] == ["ok", "30.0s"]
    assert f"Commits pushed: `{D1[:12]}` (stage)" in md
    assert "why it rolled back" not in md
    # each document whole, in a collapsed block, and parseable back
    blocks = re.findall(r"<summary>(\w+) \(JSON\)</summary>\n\n```json\n(.*?)\n```", md, re.S)
    assert [name for name, _ in blocks] == ["build", "stage"]
    assert json.loads(blocks[1][1])["commits"] == [D1]


def test_a_rollback_says_why_what_was_reverted_and_how_it_ended(tmp_path):
    md = render([read_record(_write(tmp_path, "build", _build_doc())),
                 read_record(_write(tmp_path, "stage", _stage_doc("rolled-back")))])
    assert md.startswith("## gitopsctl deploy of `1a2b3c4`: rolled-back\n")
    assert _row(md, "stage")[:4] == ["stage", "1", EXIT_MEANINGS[1], "rolled-back"]
    # a pipe and a newline in a detail stay inside their cell and line
    assert _row(md, "frontend healthy") == [
        "frontend healthy", "failed", "61.2s",
        "frontend CrashLoopBackOff \\| restarts 3 last log: boom"]
    assert ("- reason: frontend healthy: frontend CrashLoopBackOff \\| restarts 3 last log: boom"
            in md.splitlines())
    assert f"- reverted `{D1[:12]}` (frontend)" in md
    assert "- after the revert: the previous version is healthy again" in md
    assert "- note: Flux reconciled the revert in 4 s" in md
    assert f"`{REVERT[:12]}` (stage (revert))" in md


def test_a_failed_build_means_nothing_deployed_and_stage_never_ran(tmp_path):
    error = ConfigError("registry.url is not set", hint="set registry.url in gitopsctl.yaml")
    build = _write(tmp_path, "build", {"ok": False, "error": error.to_dict()})
    records = [read_record(build), read_record(tmp_path / "stage.json")]
    md = render(records)
    assert verdict(records) == "build failed, nothing deployed"
    assert md.startswith("## gitopsctl deploy: build failed, nothing deployed\n")
    assert _row(md, "build") == ["build", "2", EXIT_MEANINGS[2], "registry.url is not set", ""]
    assert _row(md, "stage") == ["stage", "-", "not run", "", ""]
    assert "- build: hint: set registry.url in gitopsctl.yaml" in md
    assert "<summary>stage (JSON)" not in md


def test_every_exit_code_reads_its_meaning_from_the_one_table(tmp_path):
    for code, meaning in EXIT_MEANINGS.items():
        doc = {**_stage_doc(), "exit_code": code, "outcome": f"outcome-{code}"}
        md = render([read_record(_write(tmp_path, "stage", doc))])
        assert _row(md, "stage")[1:3] == [str(code), cell(meaning)]
    md = render([read_record(_write(tmp_path, "stage", {**_stage_doc(), "exit_code": 99}))])
    assert _row(md, "stage")[1:3] == ["99", "exit 99, not one gitopsctl documents"]


def test_a_result_that_is_no_json_is_said_so(tmp_path):
    """A step killed before it printed leaves an empty or partial file."""
    stage = _write(tmp_path, "stage", '{"source": "1a2b')
    records = [read_record(_write(tmp_path, "build", _build_doc())), read_record(stage)]
    md = render(records)
    assert verdict(records) == "stage left no result, nothing known to be deployed"
    assert _row(md, "stage") == ["stage", "-", "unknown: the command left no exit code",
                                 f"{stage} holds no JSON document (16 bytes)", ""]


def test_a_superseded_stage_is_its_outcome(tmp_path):
    result = StageResult(SOURCE, outcome="superseded", exit_code=4, elapsed=0.4,
                         steps=[Step("superseded check", "skipped", 0.0, "9f8e7d6 is live")])
    md = render([read_record(_write(tmp_path, "stage", {**result.to_dict(), "ok": False}))])
    assert md.startswith("## gitopsctl deploy of `1a2b3c4`: superseded\n")
    assert _row(md, "stage")[1:4] == ["4", EXIT_MEANINGS[4], "superseded"]


def test_the_command_appends_to_the_summary_file_and_returns_the_same_text(tmp_path):
    out = tmp_path / "step-summary.md"
    out.write_text("earlier step's text\n")
    ctx = Context(repo=tmp_path, config_path=tmp_path / "gitopsctl.yaml")
    result = summary(ctx, [_write(tmp_path, "build", _build_doc()), tmp_path / "stage.json"],
                     output_file=out)
    assert out.read_text() == "earlier step's text\n" + result.markdown
    assert result.verdict == "not deployed" and result.exit_code == 0
    doc = result.to_dict()
    assert [(c["name"], c["ran"], c["exit_code"]) for c in doc["commands"]] == [
        ("build", True, 0), ("stage", False, None)]
    with pytest.raises(InputError):
        summary(ctx, [])
    with pytest.raises(InputError, match="cannot write the summary"):
        summary(ctx, [tmp_path / "build.json"], output_file=tmp_path / "no-such-dir" / "x.md")


def test_the_cli_prints_the_markdown_and_writes_it_without_a_config(tmp_path):
    """Through the real entry point, from a directory that is no repository: the summary
    step must work whatever the job's state."""
    stage = _write(tmp_path, "stage", _stage_doc("rolled-back"))
    out = tmp_path / "summary.md"
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("GITOPSCTL_CONFIG", None)
    proc = subprocess.run([sys.executable, "-m", "gitopsctl", "summary", "--from", str(stage),
                           "--output-file", str(out)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == out.read_text()
    assert proc.stdout.startswith("## gitopsctl deploy of `1a2b3c4`: rolled-back\n")
    proc = subprocess.run([sys.executable, "-m", "gitopsctl", "--output", "json", "summary",
                           "--from", str(stage)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    doc = json.loads(proc.stdout)
    assert doc["ok"] is True and doc["verdict"] == "rolled-back"
    assert doc["markdown"] == out.read_text()
