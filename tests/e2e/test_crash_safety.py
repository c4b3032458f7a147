"""kill -9 at the steps of stage and rollback, races and SSH drops: runs converge.

Each test kills (or disturbs) a real `gitopsctl stage` subprocess at a point seen from
outside (the git remote, the sshd sessions), runs the same command again, and checks
the final git log has no duplicate commit and the right versions actually run.
"""

from __future__ import annotations

import json
import time

import pytest

from gitopsctl import repo as gitrepo

from tests.e2e.drive import Background, assert_once, build, on_remote, records, run_json

pytestmark = pytest.mark.e2e


def Stage(lab, sha: str, *extra: str) -> Background:
    return Background(lab, "stage", "--source", sha, *extra)


def stage(lab, sha: str, *extra: str):
    return run_json(lab, "stage", "--source", sha, *extra)


def test_kill_while_waiting_for_the_frontend_then_rerun_finishes(shared_lab):
    lab = shared_lab
    sha = lab.commit_app_change({"examples/frontend/www/index.html": "k1\n"}, "app: k1")
    build(lab, sha)
    run = Stage(lab, sha)
    run.kill_when(lambda: on_remote(lab, sha, "deploy", "frontend"))
    code, doc, err = stage(lab, sha)
    assert code == 0, err
    assert [s["status"] for s in doc["steps"] if s["name"] == "bump frontend"] == ["resumed"]
    assert_once(lab, sha, [("deploy", "frontend"), ("deploy", "backend")])
    assert lab.served_version("frontend") == sha and lab.served_version("backend") == sha


def test_kill_during_the_backend_sync_then_rerun_finishes(shared_lab):
    lab = shared_lab
    sha = lab.commit_app_change({"examples/backend/www/index.html": "k2\n"}, "app: k2")
    build(lab, sha)
    run = Stage(lab, sha)
    run.kill_when(lambda: on_remote(lab, sha, "deploy", "backend") and lab.sshd.session_pids())
    code, doc, err = stage(lab, sha)
    assert code == 0, err
    assert_once(lab, sha, [("deploy", "frontend"), ("deploy", "backend")])
    assert lab.served_version("backend") == sha


def test_kill_after_the_revert_was_pushed_then_rerun_only_verifies(shared_lab):
    lab = shared_lab
    before = {s: lab.served_version(s) for s in ("frontend", "backend")}
    sha = lab.commit_app_change({"examples/backend/fail-mode": "unhealthy\n"}, "backend: break")
    build(lab, sha)
    run = Stage(lab, sha)
    run.kill_when(lambda: on_remote(lab, sha, "rollback"), timeout=240)
    code, doc, err = stage(lab, sha)
    assert code == 1, err
    assert doc["outcome"] == "rolled-back"
    assert_once(lab, sha, [("deploy", "frontend"), ("deploy", "backend"), ("rollback", None)])
    assert {s: lab.served_version(s) for s in ("frontend", "backend")} == before
    lab.commit_app_change({"examples/backend/fail-mode": "none\n"}, "backend: fix")


def test_kill_before_the_revert_then_rerun_rolls_back_once(shared_lab):
    lab = shared_lab
    before = {s: lab.served_version(s) for s in ("frontend", "backend")}
    sha = lab.commit_app_change({"examples/frontend/fail-mode": "crash\n"}, "frontend: break")
    build(lab, sha)
    run = Stage(lab, sha)
    run.kill_when(lambda: on_remote(lab, sha, "deploy", "frontend"))
    code, doc, err = stage(lab, sha)
    assert code == 1, err
    assert_once(lab, sha, [("deploy", "frontend"), ("rollback", None)])
    assert {s: lab.served_version(s) for s in ("frontend", "backend")} == before
    lab.commit_app_change({"examples/frontend/fail-mode": "none\n"}, "frontend: fix")


def test_racing_pipelines_the_older_never_overwrites_the_newer(shared_lab):
    lab = shared_lab
    older = lab.commit_app_change({"examples/backend/www/index.html": "older\n"}, "app: older")
    build(lab, older)
    newer = lab.commit_app_change({"examples/backend/www/index.html": "newer\n"}, "app: newer")
    build(lab, newer)
    slow = Stage(lab, older, "--delay", "15")
    # the older pipeline has its frontend out and sits in the stage delay ...
    deadline = time.monotonic() + 120
    while not on_remote(lab, older, "deploy", "frontend"):
        assert time.monotonic() < deadline and slow.proc.poll() is None, slow.text()
        time.sleep(0.05)
    # ... when the newer pipeline runs start to finish
    code, doc, err = stage(lab, newer)
    assert code == 0, err
    assert slow.wait() == 4, slow.text()
    assert slow.document()["outcome"] == "superseded"
    assert not on_remote(lab, older, "deploy", "backend")
    assert not on_remote(lab, older, "rollback")
    assert lab.served_version("frontend") == newer and lab.served_version("backend") == newer


def test_ssh_drop_during_the_backend_sync_reverts_both(shared_lab):
    lab = shared_lab
    before = {s: lab.served_version(s) for s in ("frontend", "backend")}
    sha = lab.commit_app_change({"examples/backend/www/index.html": "dropped\n"}, "app: dropped")
    build(lab, sha)
    run = Stage(lab, sha)
    deadline = time.monotonic() + 150
    while not (on_remote(lab, sha, "deploy", "backend") and lab.sshd.session_pids()):
        assert time.monotonic() < deadline and run.proc.poll() is None, run.text()
        time.sleep(0.02)
    lab.sshd.kill_sessions()
    assert run.wait() == 1, run.text()
    assert_once(lab, sha, [("deploy", "frontend"), ("deploy", "backend"), ("rollback", None)])
    message = gitrepo.open_repo(lab.remote.bare).commit(records(lab, sha)[0].commit).message
    assert "Gitopsctl-Failed-Target: vm" in message
    assert {s: lab.served_version(s) for s in ("frontend", "backend")} == before


def test_manual_rollback_dry_run_and_to(shared_lab):
    lab = shared_lab
    first = lab.commit_app_change({"examples/frontend/www/index.html": "m1\n"}, "app: m1")
    build(lab, first)
    assert stage(lab, first)[0] == 0
    second = lab.commit_app_change({"examples/frontend/www/index.html": "m2\n"}, "app: m2")
    build(lab, second)
    assert stage(lab, second)[0] == 0
    tip = lab.log("%H")[0]
    result = lab.gitopsctl("-o", "json", "rollback", "--dry-run")
    plan = json.loads(result.stdout)
    assert result.returncode == 0 and plan["dry_run"] and plan["source"] == second
    assert {r["service"] for r in plan["reverted"]} == {"frontend", "backend"}
    assert first[:7] in plan["live_after"]["frontend"]
    assert lab.log("%H")[0] == tip  # a dry run writes nothing
    result = lab.gitopsctl("-o", "json", "rollback", "--to", first, "--reason", "m2 is slow")
    done = json.loads(result.stdout)
    assert result.returncode == 1 and done["verified"], result.stderr
    assert lab.served_version("frontend") == first and lab.served_version("backend") == first
    message = gitrepo.open_repo(lab.remote.bare).commit(lab.log("%H")[0]).message
    assert "Reason: m2 is slow" in message and "[skip ci]" in message.splitlines()[0]
    again = json.loads(lab.gitopsctl("-o", "json", "rollback", "--to", first).stdout)
    assert again["reverted"] == []
