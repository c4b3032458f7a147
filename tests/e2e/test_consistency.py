"""Ordinary faults end consistent: one source live on both targets, git saying so, honest exits.

Each test reproduces a fault seen on the sandbox homelab (issue 12) by driving the real
CLI against the lab, and checks the remote's git log, what each service actually
serves, and the exit code. Every test leaves the lab live and healthy.
"""

from __future__ import annotations

import pytest

from gitopsctl.sandbox.lab.gitremote import git

from tests.e2e.drive import (assert_once, build, fresh_clone, on_remote, refusing, records,
                             remote_message, run_json, served)

pytestmark = pytest.mark.e2e

FRONTEND_MANIFEST = "clusters/homelab/apps/frontend/deployment.yaml"


def good_commit(lab, text: str) -> str:
    sha = lab.commit_app_change({"examples/frontend/www/index.html": f"{text}\n",
                                 "examples/backend/www/index.html": f"{text}\n"}, f"app: {text}")
    build(lab, sha)
    return sha


def deployed(lab, text: str) -> str:
    sha = good_commit(lab, text)
    code, doc, err = run_json(lab, "stage", "--source", sha)
    assert code == 0, err
    return sha


def test_a_dirty_tree_holding_the_new_value_still_deploys(shared_lab):
    lab = shared_lab
    sha = good_commit(lab, "dirty")
    # What a kill between the file write and `git commit` left behind, or any dirty checkout.
    code, _, err = run_json(lab, "bump", "--service", "frontend", "--source", sha, "--no-commit")
    assert code == 0, err
    dirty = git(lab.ci, "status", "--porcelain")
    assert FRONTEND_MANIFEST in dirty
    code, doc, err = run_json(lab, "stage", "--source", sha)
    assert code == 0 and doc["outcome"] == "deployed", err
    assert_once(lab, sha, [("deploy", "frontend"), ("deploy", "backend")])
    assert served(lab) == {"frontend": sha, "backend": sha}
    assert git(lab.ci, "status", "--porcelain") == dirty  # the user's edit is theirs, untouched
    git(lab.ci, "checkout", "-q", "--", FRONTEND_MANIFEST)


def test_staged_work_is_never_swept_into_a_rollback(shared_lab):
    lab = shared_lab
    deployed(lab, "before-staged")
    sha = deployed(lab, "staged")
    (lab.ci / "NOTES.md").write_text("half-done thoughts\n")
    git(lab.ci, "add", "NOTES.md")
    code, doc, err = run_json(lab, "rollback", "--reason", "staged test")
    assert code == 1 and doc["verified"], err
    tip = records(lab)[0]
    assert tip.kind == "rollback" and tip.source == sha
    changed = git(lab.remote.bare, "show", "--name-only", "--format=", tip.commit).split()
    assert "NOTES.md" not in changed
    assert "NOTES.md" not in git(lab.remote.bare, "ls-tree", "-r", "--name-only", "main").split()
    assert git(lab.ci, "diff", "--cached", "--name-only") == "NOTES.md"  # still staged, still theirs
    git(lab.ci, "rm", "-q", "--cached", "NOTES.md")
    (lab.ci / "NOTES.md").unlink()


def test_a_malformed_backend_file_stops_the_stage_before_anything_is_live(shared_lab):
    lab = shared_lab
    deployed(lab, "before-malformed")
    before = served(lab)
    tip_before = lab.remote.remote_head()
    broken = "clusters/homelab/backend-vm/extra.yaml"
    sha = lab.commit_app_change(
        {broken: 'image: x:1 # {"$imagepolicy": "flux-system:backend"}\nports: [1, 2\n',
         "examples/backend/www/index.html": "malformed\n"}, "app: malformed backend file")
    build(lab, sha)
    code, doc, err = run_json(lab, "stage", "--source", sha)
    assert code == 2, err
    assert doc["outcome"] == "failed" and doc["steps"], doc
    assert broken in doc["error"]["location"]
    assert records(lab, sha) == []
    assert served(lab) == before
    since = git(lab.remote.bare, "log", "--format=%s", f"{tip_before}..main").splitlines()
    assert not [s for s in since if s.startswith(("deploy(", "rollback:"))], since
    lab.commit_app_change({broken: "# fixed: nothing here\n"}, "app: drop the broken file")


def test_a_backend_push_refused_by_a_hook_rolls_back_the_frontend(shared_lab):
    lab = shared_lab
    deployed(lab, "before-hook")
    before = served(lab)
    sha = good_commit(lab, "hooked")
    with refusing(lab, "deploy(backend)"):
        code, doc, err = run_json(lab, "stage", "--source", sha)
    assert code == 1, err
    assert doc["outcome"] == "rolled-back" and doc["rollback"]["verified"]
    steps = {s["name"]: s["status"] for s in doc["steps"]}
    assert steps["bump frontend"] == "ok" and steps["bump backend"] == "failed", steps
    assert_once(lab, sha, [("deploy", "frontend"), ("rollback", None)])
    assert "not accepted here" in remote_message(lab, records(lab, sha)[0].commit)
    assert served(lab) == before


def test_a_rollback_the_remote_refuses_is_exit_3_and_a_rerun_finishes_it(shared_lab):
    lab = shared_lab
    before = served(lab)
    sha = lab.commit_app_change({"examples/backend/fail-mode": "unhealthy\n"}, "backend: break (hook)")
    build(lab, sha)
    with refusing(lab, "rollback:"):
        code, doc, err = run_json(lab, "stage", "--source", sha)
    assert code == 3, err
    assert doc["outcome"] == "rollback-failed" and doc["steps"]
    assert not on_remote(lab, sha, "rollback")
    code, doc, err = run_json(lab, "stage", "--source", sha)
    assert code == 1 and doc["outcome"] == "rolled-back", err
    assert_once(lab, sha, [("deploy", "frontend"), ("deploy", "backend"), ("rollback", None)])
    assert served(lab) == before
    lab.commit_app_change({"examples/backend/fail-mode": "none\n"}, "backend: fix (hook)")


def test_a_revert_that_conflicts_is_exit_3_and_pushes_nothing(shared_lab):
    lab = shared_lab
    deployed(lab, "before-conflict")
    sha = deployed(lab, "conflict")
    # A human touched the same line after the deploy (same image, now quoted).
    git(lab.remote.work, "pull", "-q", "--ff-only", "origin", "main")
    path = lab.remote.work / FRONTEND_MANIFEST
    text = path.read_text()
    line = next(x for x in text.splitlines() if "$imagepolicy" in x and "image:" in x)
    value = line.split("image:")[1].split("#")[0].strip()
    path.write_text(text.replace(line, line.replace(value, f'"{value}"')))
    edit = lab.remote.commit_all("by hand: quote the frontend image")
    lab.remote.push()
    tip = lab.remote.remote_head()
    code, doc, err = run_json(lab, "rollback")
    assert code == 3, err
    assert doc["error"]["kind"] == "revert-conflict" and lab.remote.remote_head() == tip
    assert "revert by hand" in err or "revert by hand" in (doc["error"].get("hint") or "")
    git(lab.remote.work, "revert", "--no-edit", edit)
    lab.remote.push()
    assert served(lab)["frontend"] == sha


def test_rollback_twice_never_takes_the_release_before_down(shared_lab, tmp_path):
    lab = shared_lab
    first = deployed(lab, "twice-1")
    second = deployed(lab, "twice-2")
    code, doc, err = run_json(lab, "rollback", "--reason", "twice")
    assert code == 1 and doc["source"] == second and doc["verified"], err
    assert served(lab) == {"frontend": first, "backend": first}
    tip = lab.remote.remote_head()
    code, doc, err = run_json(lab, "rollback")
    assert code == 1 and doc["reverted"] == [] and doc["already_rolled_back"], err
    fresh = fresh_clone(lab, tmp_path / "fresh")
    code, doc, err = run_json(lab, "rollback", cwd=fresh)
    assert code == 1 and doc["reverted"] == [], err
    assert lab.remote.remote_head() == tip
    assert served(lab) == {"frontend": first, "backend": first}
    code, doc, err = run_json(lab, "rollback", "--dry-run")
    assert code == 0 and doc["reverted"] == [] and "--to" in " ".join(doc["notes"])


def test_a_shallow_clone_names_the_missing_history(shared_lab, tmp_path):
    lab = shared_lab
    # The tip is a developer's commit, so no deploy record is in a depth-1 clone.
    lab.commit_app_change({"README.md": "shallow\n"}, "docs: shallow")
    shallow = fresh_clone(lab, tmp_path / "shallow", depth=1)
    for args in (("rollback", "--dry-run"), ("status",)):
        result = lab.gitopsctl(*args, cwd=shallow)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "shallow" in result.stderr and "fetch-depth: 0" in result.stderr, result.stderr


def test_stage_leaves_committed_links_as_links(shared_lab):
    lab = shared_lab
    app = "clusters/homelab/apps/frontend"
    git(lab.remote.work, "pull", "-q", "--ff-only", "origin", "main")
    (lab.remote.work / app / "alias.yaml").symlink_to("deployment.yaml")   # inside, in scope
    (lab.remote.work / app / "gone.yaml").symlink_to("missing.yaml")       # dangling
    lab.remote.commit_all("links beside the frontend manifests")
    lab.remote.push()
    links = git(lab.remote.bare, "ls-tree", "main", f"{app}/alias.yaml", f"{app}/gone.yaml")
    sha = good_commit(lab, "links")
    code, doc, err = run_json(lab, "stage", "--source", sha)
    assert code == 0, err
    assert git(lab.remote.bare, "ls-tree", "main", f"{app}/alias.yaml", f"{app}/gone.yaml") == links
    assert all(line.startswith("120000 ") for line in links.splitlines()) and len(links.splitlines()) == 2
    frontend = next(p for p in doc["plan"] if p["service"] == "frontend")
    assert {f"{app}/alias.yaml", f"{app}/gone.yaml"} <= {s.split(":")[0] for s in frontend["skipped"]}
    assert frontend["files"] == [f"{app}/deployment.yaml"]
    assert served(lab) == {"frontend": sha, "backend": sha}
    git(lab.remote.work, "pull", "-q", "--ff-only", "origin", "main")
    git(lab.remote.work, "rm", "-q", f"{app}/alias.yaml", f"{app}/gone.yaml")
    lab.remote.commit_all("drop the links")
    lab.remote.push()
