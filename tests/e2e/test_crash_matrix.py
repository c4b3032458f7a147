"""The fault matrix: kill -9 at named steps of stage and rollback, rerun, end consistent.

Each test runs the real CLI with a failpoint (GITOPSCTL_FAILPOINTS: the process pauses
there and the test kills it), then reruns the same command in the old CI clone or in a
fresh one, as a retried CI job would, and checks the remote's git log holds each commit
once and both services serve one source.
"""

from __future__ import annotations

import pytest

from tests.e2e.drive import (Background, assert_once, build, fresh_clone, on_remote, records,
                             run_json, served)

pytestmark = pytest.mark.e2e


def change(lab, files: dict[str, str], message: str) -> str:
    sha = lab.commit_app_change(files, message)
    build(lab, sha)
    return sha


@pytest.mark.parametrize("rerun_in", ["old clone", "fresh clone"])
def test_kill_between_the_file_write_and_its_commit(shared_lab, tmp_path, rerun_in):
    lab = shared_lab
    sha = change(lab, {"examples/frontend/www/index.html": f"write-{rerun_in}\n"}, "app: write")
    run = Background(lab, "stage", "--source", sha, failpoint="index-written")
    run.kill_at_failpoint()
    assert records(lab, sha) == []  # nothing of it reached the remote
    where = lab.ci if rerun_in == "old clone" else fresh_clone(lab, tmp_path / "fresh")
    code, doc, err = run_json(lab, "stage", "--source", sha, cwd=where)
    assert code == 0, err
    assert_once(lab, sha, [("deploy", "frontend"), ("deploy", "backend")])
    assert served(lab) == {"frontend": sha, "backend": sha}


@pytest.mark.parametrize("rerun_in", ["old clone", "fresh clone"])
def test_kill_between_the_failure_verdict_and_the_revert_push(shared_lab, tmp_path, rerun_in):
    lab = shared_lab
    before = served(lab)
    sha = change(lab, {"examples/backend/fail-mode": "unhealthy\n"}, f"backend: break ({rerun_in})")
    run = Background(lab, "stage", "--source", sha, failpoint="before-push:rollback")
    run.kill_at_failpoint(timeout=240)
    assert not on_remote(lab, sha, "rollback")
    where = lab.ci if rerun_in == "old clone" else fresh_clone(lab, tmp_path / "fresh")
    code, doc, err = run_json(lab, "stage", "--source", sha, cwd=where)
    assert code == 1 and doc["outcome"] == "rolled-back", err
    assert_once(lab, sha, [("deploy", "frontend"), ("deploy", "backend"), ("rollback", None)])
    assert served(lab) == before
    lab.commit_app_change({"examples/backend/fail-mode": "none\n"}, f"backend: fix ({rerun_in})")


def test_kill_at_the_failure_verdict_then_rerun_rolls_back_once(shared_lab):
    lab = shared_lab
    before = served(lab)
    sha = change(lab, {"examples/frontend/fail-mode": "crash\n"}, "frontend: break (verdict)")
    run = Background(lab, "stage", "--source", sha, failpoint="failure-verdict")
    run.kill_at_failpoint(timeout=240)
    code, doc, err = run_json(lab, "stage", "--source", sha)
    assert code == 1, err
    assert_once(lab, sha, [("deploy", "frontend"), ("rollback", None)])
    assert served(lab) == before
    lab.commit_app_change({"examples/frontend/fail-mode": "none\n"}, "frontend: fix (verdict)")


@pytest.mark.parametrize("kill_point", ["before the revert push", "after the revert push"])
def test_a_killed_manual_rollback_reruns_to_one_revert(shared_lab, tmp_path, kill_point):
    lab = shared_lab
    first = change(lab, {"examples/frontend/www/index.html": f"m1 {kill_point}\n"}, "app: m1")
    assert run_json(lab, "stage", "--source", first)[0] == 0
    second = change(lab, {"examples/frontend/www/index.html": f"m2 {kill_point}\n"}, "app: m2")
    assert run_json(lab, "stage", "--source", second)[0] == 0
    if kill_point == "before the revert push":
        run = Background(lab, "rollback", "--reason", "2 a.m.", failpoint="before-push:rollback")
        run.kill_at_failpoint()
        assert not on_remote(lab, second, "rollback")
    else:
        run = Background(lab, "rollback", "--reason", "2 a.m.")
        run.kill_when(lambda: on_remote(lab, second, "rollback"))
    for where in (lab.ci, fresh_clone(lab, tmp_path / "fresh")):
        code, doc, err = run_json(lab, "rollback", "--reason", "2 a.m.", cwd=where)
        assert code == 1 and doc["verified"], err
    assert_once(lab, second, [("deploy", "frontend"), ("deploy", "backend"), ("rollback", None)])
    assert not on_remote(lab, first, "rollback")
    assert served(lab) == {"frontend": first, "backend": first}
