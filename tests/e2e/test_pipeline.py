"""The whole story on the real harness: build, stage, verify, rollback.

Each test drives the real CLI in a CI clone against a lab homelab (git remote, Docker
engine, registry, Kubernetes emulator, SSH VM) and asserts the final git log and what
actually runs (the /version each service answers).
"""

from __future__ import annotations

import pytest

from gitopsctl import repo as gitrepo

from tests.e2e.drive import build, run_json

pytestmark = pytest.mark.e2e

FRONTEND_BREAK = {"examples/frontend/fail-mode": "crash\n"}
BACKEND_BREAK = {"examples/backend/fail-mode": "unhealthy\n"}

AUTOMATION = "clusters/homelab/image-automation/automation.yaml"


def automation_suspended(lab) -> bool:
    """spec.suspend of the image automation at the remote's tip (single writer)."""
    from ruamel.yaml import YAML

    text = gitrepo.open_repo(lab.remote.bare).git.show(f"refs/heads/main:{AUTOMATION}")
    docs = [d for d in YAML(typ="safe").load_all(text) if d and d.get("kind") == "ImageUpdateAutomation"]
    return bool(docs[0]["spec"].get("suspend"))


def records(lab):
    return gitrepo.deploy_log(lab.remote.bare, "refs/heads/main")


def test_good_commit_goes_live_frontend_then_backend(shared_lab):
    lab = shared_lab
    sha = lab.commit_app_change({"examples/frontend/www/index.html": "<h1>v2</h1>\n",
                                 "examples/backend/www/index.html": "v2\n"}, "app: v2")
    build(lab, sha)
    code, doc, err = run_json(lab, "stage", "--source", sha)
    assert code == 0, err
    assert doc["outcome"] == "deployed"
    names = [s["name"] for s in doc["steps"]]
    assert names.index("frontend healthy") < names.index("bump backend")
    log = records(lab)
    deploys = [r for r in log if r.kind == "deploy"]
    assert [(r.service, r.source) for r in deploys[:2]] == [("backend", sha), ("frontend", sha)]
    assert all("@sha256:" in r.image for r in deploys[:2])
    subjects = lab.log("%s")
    assert all("[skip ci]" in s for s in subjects[:2])
    assert lab.served_version("frontend") == sha
    assert lab.served_version("backend") == sha
    # verify and status read the same story back from git and the targets
    code, report, err = run_json(lab, "verify")
    assert code == 0 and report["healthy"], err
    code, status, err = run_json(lab, "status")
    assert code == 0, err
    assert {s["service"]: s["source"] for s in status["services"]} == {"frontend": sha, "backend": sha}
    assert all(s["health"]["healthy"] for s in status["services"])
    # the same pipeline again changes nothing
    code, again, err = run_json(lab, "stage", "--source", sha)
    assert code == 0, err
    assert lab.log("%H")[0] == log[0].commit


def test_frontend_crash_loop_reverts_and_never_touches_the_backend(shared_lab):
    lab = shared_lab
    before = {svc: lab.served_version(svc) for svc in ("frontend", "backend")}
    sha = lab.commit_app_change(FRONTEND_BREAK, "frontend: break it")
    build(lab, sha)
    code, doc, err = run_json(lab, "stage", "--source", sha)
    assert code == 1, err
    assert doc["outcome"] == "rolled-back"
    assert "bump backend" not in [s["name"] for s in doc["steps"]]
    log = records(lab)
    assert log[0].kind == "rollback" and log[0].source == sha
    assert log[1].kind == "deploy" and log[1].service == "frontend"
    assert not [r for r in log if r.kind == "deploy" and r.service == "backend" and r.source == sha]
    message = gitrepo.open_repo(lab.remote.bare).commit(log[0].commit).message
    assert "CrashLoopBackOff" in message
    assert "[skip ci]" in message.splitlines()[0]
    assert f"Gitopsctl-Rollback-Of: {sha}" in message
    assert doc["rollback"]["verified"] is True
    # nothing may undo the rollback: the same commit suspends Flux image automation
    assert automation_suspended(lab)
    assert AUTOMATION in gitrepo.open_repo(lab.remote.bare).git.show(
        "--name-only", "--format=", log[0].commit)
    assert {svc: lab.served_version(svc) for svc in ("frontend", "backend")} == before
    lab.commit_app_change({"examples/frontend/fail-mode": "none\n"}, "frontend: fix")


def test_unhealthy_backend_reverts_both(shared_lab):
    lab = shared_lab
    before = {svc: lab.served_version(svc) for svc in ("frontend", "backend")}
    sha = lab.commit_app_change({**BACKEND_BREAK, "examples/frontend/www/index.html": "v3\n"},
                                "backend: break it")
    build(lab, sha)
    code, doc, err = run_json(lab, "stage", "--source", sha)
    assert code == 1, err
    log = records(lab)
    rollback = log[0]
    assert rollback.kind == "rollback"
    deployed = {r.commit for r in log if r.kind == "deploy" and r.source == sha}
    assert len(deployed) == 2
    assert set(rollback.reverts) == deployed
    message = gitrepo.open_repo(lab.remote.bare).commit(rollback.commit).message
    assert "Gitopsctl-Failed-Target: vm" in message
    assert "Evidence:" in message
    assert {svc: lab.served_version(svc) for svc in ("frontend", "backend")} == before
    # rolling back again by hand reverts nothing twice
    code, again, err = run_json(lab, "rollback", "--source", sha)
    assert again["reverted"] == [] and again["already_rolled_back"] is True, err
    assert records(lab)[0].commit == rollback.commit
    lab.commit_app_change({"examples/backend/fail-mode": "none\n"}, "backend: fix")


def test_stale_pipeline_is_superseded_and_changes_nothing(shared_lab):
    lab = shared_lab
    old = lab.commit_app_change({"examples/frontend/www/index.html": "old\n"}, "app: old")
    build(lab, old)
    new = lab.commit_app_change({"examples/frontend/www/index.html": "new\n"}, "app: new")
    build(lab, new)
    suspended_before = automation_suspended(lab)  # by the rollbacks above, in file order
    code, doc, err = run_json(lab, "stage", "--source", new)
    assert code == 0, err
    assert not automation_suspended(lab)  # a successful stage resumes it
    resumed = any(s["name"] == "resume image automation" and "resumed" in s["detail"]
                  for s in doc["steps"])
    assert resumed == suspended_before
    tip = lab.log("%H")[0]
    code, doc, err = run_json(lab, "stage", "--source", old)
    assert code == 4, err
    assert doc["outcome"] == "superseded"
    assert lab.log("%H")[0] == tip
    assert lab.served_version("frontend") == new


def test_registry_down_during_build_deploys_nothing(shared_lab):
    lab = shared_lab
    tip = lab.log("%H")[0]
    sha = lab.commit_app_change({"examples/frontend/www/index.html": "v9\n"}, "app: v9")
    lab.registry.stop()
    try:
        code, doc, err = run_json(lab, "build", "--source", sha)
    finally:
        lab.registry.start()
    assert code == 1, err
    assert lab.registry.url in err
    assert not (lab.ci / ".gitopsctl" / "builds" / f"{sha}.json").exists()
    assert lab.log("%H")[1] == tip  # only the developer's commit; no deploy commit
