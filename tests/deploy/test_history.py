"""history on a real bare remote: deploys, rollbacks, suspends and resumes from git,
newest first, with filters that combine and bad input refused with exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from gitopsctl.commands import Context
from gitopsctl.console import Reporter
from gitopsctl.deploy.history import history, parse_since
from gitopsctl.deploy.stage import stage
from gitopsctl.deploy.suspension import resume, suspend
from gitopsctl.errors import EXIT_OK, EXIT_ROLLED_BACK, ConfigError, InputError, UsageError

from .conftest import FakeTargets, remote_tip

SERVICES = {"web": "north", "api": "box"}
KINDS = {"north": "kubernetes", "box": "vm"}


@pytest.fixture
def story(lab_factory):
    """v2 deployed, v3 deployed and rolled back (api failed), then a suspend and a resume."""
    lab = lab_factory(SERVICES, KINDS, [["web"], ["api"]])
    good = lab.app_commit("v2")
    assert stage(lab.context(), FakeTargets(lab), source=good, delay=0,
                 allow_unbuilt=True).exit_code == EXIT_OK
    bad = lab.app_commit("v3")
    assert stage(lab.context(), FakeTargets(lab, {"api": ["unhealthy"]}), source=bad, delay=0,
                 allow_unbuilt=True).exit_code == EXIT_ROLLED_BACK
    user = Context(repo=lab.work, config_path=lab.work / "gitopsctl.yaml", environ={"USER": "alice"})
    suspend(user, reason="backup window")
    resume(user, reason="backup done")
    return lab, good, bad


def test_history_lists_everything_newest_first_with_who_and_what_reverted_what(story):
    lab, good, bad = story

    result = history(lab.context())

    rows = [(e["kind"], e["services"], (e["source"] or "")[:7]) for e in result.entries]
    assert rows == [("resume", [], ""), ("suspend", [], ""), ("rollback", ["api", "web"], bad[:7]),
                    ("deploy", ["api"], bad[:7]), ("deploy", ["web"], bad[:7]),
                    ("deploy", ["api"], good[:7]), ("deploy", ["web"], good[:7])]
    resume_entry, suspend_entry, rollback = result.entries[:3]
    assert (suspend_entry["by"], suspend_entry["reason"]) == ("alice", "backup window")
    assert (resume_entry["by"], resume_entry["reason"]) == ("alice", "backup done")
    assert "503" in rollback["reason"]
    reverted = [e for e in result.entries if e["kind"] == "deploy" and e["source"] == bad]
    assert [e["reverted_by"] for e in reverted] == [rollback["commit"]] * 2
    assert [e["reverted_by"] for e in result.entries[5:]] == [None, None]
    assert all(e["image"].endswith(f":{good[:7]}") for e in result.entries[5:])
    assert result.tip == remote_tip(lab) and not result.offline
    assert [e["timestamp"] for e in result.entries] == sorted(
        (e["timestamp"] for e in result.entries), reverse=True)


def test_history_filters_combine(story):
    lab, good, bad = story
    ctx = lab.context()

    web = history(ctx, service="web")
    assert [(e["kind"], e["services"]) for e in web.entries] == [
        ("resume", []), ("suspend", []), ("rollback", ["api", "web"]), ("deploy", ["web"]),
        ("deploy", ["web"])]
    of_bad = history(ctx, source=bad[:9])
    assert [e["kind"] for e in of_bad.entries] == ["rollback", "deploy", "deploy"]
    assert of_bad.filters["source"] == bad  # the short SHA, resolved
    both = history(ctx, service="api", source=good)
    assert [(e["kind"], e["services"], e["source"]) for e in both.entries] == [
        ("deploy", ["api"], good)]
    assert [e["kind"] for e in history(ctx, limit=2).entries] == ["resume", "suspend"]
    assert [e["kind"] for e in history(ctx, service="web", source=bad, limit=1).entries] == ["rollback"]
    assert len(history(ctx, since="1h").entries) == 7
    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%Y-%m-%d")
    assert history(ctx, since=tomorrow).entries == []


def test_history_refuses_bad_input_with_exit_2_and_a_hint(story):
    lab, _, _ = story
    ctx = lab.context()

    with pytest.raises(ConfigError) as unknown:
        history(ctx, service="nope")
    assert unknown.value.exit_code == 2 and "web" in unknown.value.hint
    with pytest.raises(UsageError) as since:
        history(ctx, since="last tuesday")
    assert since.value.exit_code == 2 and "--since 2h" in since.value.hint
    with pytest.raises(InputError) as not_a_sha:
        history(ctx, source="xyz123")
    assert not_a_sha.value.exit_code == 2 and "hex" in not_a_sha.value.hint
    with pytest.raises(InputError) as absent:
        history(ctx, source="deadbeefdeadbeef")
    assert absent.value.exit_code == 2 and "not in" in absent.value.message
    with pytest.raises(UsageError):
        history(ctx, limit=0)


def test_history_offline_reads_the_local_clone_and_warns(story, capsys):
    lab, _, _ = story
    subprocess.run(["git", "-C", str(lab.work), "pull", "-q", "--ff-only"], check=True)
    subprocess.run(["git", "-C", str(lab.work), "remote", "set-url", "origin",
                    str(lab.work.parent / "gone.git")], check=True)
    reporter = Reporter(verbose=False, color=False)
    ctx = Context(repo=lab.work, config_path=lab.work / "gitopsctl.yaml", environ={},
                  reporter=reporter)

    result = history(ctx)

    assert result.offline and len(result.entries) == 7
    assert "cannot fetch, showing the local clone" in capsys.readouterr().err


def test_since_reads_durations_dates_and_times():
    now = datetime.now(timezone.utc)
    assert abs((now - parse_since("90m")).total_seconds() - 5400) < 5
    assert abs((now - parse_since("2d")).total_seconds() - 172800) < 5
    assert parse_since("2026-11-30") == datetime(2026, 11, 30, tzinfo=timezone.utc)
    assert parse_since("2026-11-30T18:00:00Z") == datetime(2026, 11, 30, 18, tzinfo=timezone.utc)
    assert parse_since("2026-11-30T18:00+01:00") == datetime(2026, 11, 30, 17, tzinfo=timezone.utc)
    for bad in ("", "soon", "5 parsecs", "-3h"):
        with pytest.raises(UsageError):
            parse_since(bad)


# ---------------------------------------------------------------- through the CLI

def run_cli(lab, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITOPSCTL_")}
    return subprocess.run([sys.executable, "-m", "gitopsctl", "--no-color", *args], cwd=lab.work,
                          env=env, capture_output=True, text=True, timeout=120)


def test_the_cli_prints_history_as_one_json_document_and_refuses_a_bad_since(story):
    lab, good, bad = story

    shown = run_cli(lab, "-o", "json", "history", "--service", "api", "--limit", "3")
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["ok"] and [e["kind"] for e in doc["entries"]] == ["resume", "suspend", "rollback"]
    text = run_cli(lab, "history", "--source", good)
    assert text.returncode == 0, text.stderr
    assert text.stdout.count(good[:7]) == 2 and bad[:7] not in text.stdout

    refused = run_cli(lab, "history", "--since", "yesterday-ish")
    assert refused.returncode == 2
    assert "--since" in refused.stderr and "hint" in refused.stderr
