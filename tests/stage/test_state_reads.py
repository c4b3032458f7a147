"""How commands read the deploy state: once, and only as far back as the answer is.

Every git process the CLI starts goes through a `git` on PATH that logs its arguments
before it runs the real git, so these tests see the `git log` calls themselves.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gitopsctl import repo as gitrepo
from gitopsctl.deploy.state import DeployState, full_scan_state
from gitopsctl.errors import EXIT_ROLLED_BACK
from gitopsctl.sandbox.lab.gitremote import git

from tests.stage.historygen import busy_year, write_history

QUERIES = ("latest_live_source", "newest_record", "pause")


def homelab(root: Path, events: list[tuple], **kw) -> tuple[Path, Path]:
    """A bare remote holding `events` and a clone of it; (bare, clone)."""
    root.mkdir(parents=True, exist_ok=True)
    bare = root / "remote.git"
    git(root, "init", "-q", "--bare", "-b", "main", str(bare))
    write_history(bare, events, **kw)
    git(root, "clone", "-q", str(bare), str(root / "work"))
    git(root / "work", "config", "user.name", "someone")
    git(root / "work", "config", "user.email", "someone@homelab.lan")
    return bare, root / "work"


def logging_git(root: Path) -> tuple[dict[str, str], Path]:
    """An environment whose `git` logs each call (one line of arguments) to the file returned."""
    bindir = root / "bin"
    bindir.mkdir()
    calls = root / "git-calls.log"
    wrapper = bindir / "git"
    wrapper.write_text("#!/bin/sh\n"
                       f"printf '%s\\037' \"$@\" >> '{calls}'\n"
                       f"printf '\\n' >> '{calls}'\n"
                       f"exec '{shutil.which('git')}' \"$@\"\n")
    wrapper.chmod(0o755)
    return {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}, calls


def gitopsctl(work: Path, env: dict[str, str], *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "gitopsctl", "--no-color", "-o", "json", *args],
                          cwd=work, env=env, capture_output=True, text=True, timeout=120)
    out = json.loads(proc.stdout)
    assert proc.returncode == out.get("exit_code", 0), proc.stderr
    return out


def log_calls(calls: Path) -> list[list[str]]:
    lines = calls.read_text().splitlines() if calls.exists() else []
    calls.unlink(missing_ok=True)
    return [line.split("\x1f")[:-1] for line in lines if line.startswith("log\x1f")]


def bounded(argv: list[str]) -> bool:
    """A `git log` that cannot walk the whole history: a count, or a commit it stops at."""
    return any(a.startswith("-n") for a in argv) or any(a.startswith("^") for a in argv)


@pytest.mark.parametrize("command", [["rollback", "--dry-run"], ["status", "--no-health"]])
def test_a_command_reads_the_log_the_same_at_any_history_length(tmp_path, command):
    seen = {}
    for commits in (300, 3000):  # both longer than the first page
        bare, work = homelab(tmp_path / str(commits), busy_year(commits))
        env, calls = logging_git(tmp_path / str(commits))
        out = gitopsctl(work, env, *command)
        logs = log_calls(calls)
        seen[commits] = logs
        assert logs and all(bounded(argv) for argv in logs), logs
        newest = gitrepo.deploy_log(bare, "main")[:2]
        if command[0] == "rollback":
            assert [r["commit"] for r in out["reverted"]] == [r.commit for r in newest]
            assert out["dry_run"] is True and out["exit_code"] == 0
        else:
            assert {s["service"]: s["commit"] for s in out["services"]} == \
                {r.service: r.commit for r in newest}
            assert out["suspended"] is False
    assert len(seen[300]) == len(seen[3000]) == 1, seen


def test_a_rollback_while_suspended_records_the_pause_and_reads_once(tmp_path):
    events = busy_year(600) + [("suspend",), ("app",), ("deploy", "frontend")]
    bare, work = homelab(tmp_path, events)
    suspend = gitrepo.deploy_log(bare, "main", deploys=False, pauses=True)[0]
    env, calls = logging_git(tmp_path)

    out = gitopsctl(work, env, "rollback", "--no-verify", "--reason", "bad frontend")

    assert out["commit"] and out["exit_code"] == EXIT_ROLLED_BACK, out
    logs = log_calls(calls)
    # one page from the fetched tip answers everything; the build on that same tip
    # (nothing pushed meanwhile) reads nothing again
    assert all(bounded(argv) for argv in logs) and len(logs) == 1, logs
    revert = gitrepo.parse_trailers(gitrepo.commit_message(bare, out["commit"]))
    assert revert["Gitopsctl-Suspension"] == (suspend.commit,)
    # the walk stops at the rollback, which names the standing suspend
    status = gitopsctl(work, env, "status", "--no-health")
    assert status["suspended"] is True and status["suspension"]["commit"] == suspend.commit
    assert all(bounded(argv) for argv in log_calls(calls))


def test_advance_over_a_merge_reads_the_new_first_parent_chain(tmp_path):
    """A branch tip whose first-parent chain does not pass the old tip (a `git pull` merge
    pushed): the old state's records are not the new tip's, so it is read again."""
    bare, work = homelab(tmp_path, busy_year(30))
    old_tip = git(work, "rev-parse", "HEAD")
    git(work, "checkout", "-q", "-b", "side", "HEAD~6")
    (work / "README").write_text("side\n")
    git(work, "add", "README")
    git(work, "commit", "-q", "-m", "side work")
    git(work, "merge", "-q", "--no-ff", "-m", "merge main", "main")
    merge = git(work, "rev-parse", "HEAD")
    before = DeployState(work, old_tip)
    assert before.live("frontend") is not None
    moved = before.advance(merge)
    full = full_scan_state(work, merge)
    assert moved.records == full.records
    assert moved.live("frontend") == full.live("frontend")
    assert [getattr(moved, q)() for q in QUERIES] == [getattr(full, q)() for q in QUERIES]


def test_a_history_written_before_the_pause_trailer_still_finds_an_old_suspend(tmp_path):
    """No record says the pause state: the walk goes back to the newest suspend or resume."""
    events = [("app",), ("deploy", "frontend"), ("suspend",)]
    events += [("app",), ("deploy", "frontend"), ("deploy", "backend")] * 50
    bare, _ = homelab(tmp_path, events, pause_trailers=False)
    state = DeployState(bare, gitrepo.resolve_commit(bare, "main"), page=4)
    legacy = DeployState(bare, gitrepo.resolve_commit(bare, "main"))
    suspend = gitrepo.deploy_log(bare, "main", deploys=False, pauses=True)[0]
    assert suspend.kind == "suspend"
    assert state.pause() == legacy.pause() == suspend
