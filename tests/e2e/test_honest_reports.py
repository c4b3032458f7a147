"""status, verify and bump tell the truth, on the real lab (issue 12, point 9).

- `status` exits 1 (and says "ok": false) when a target is unhealthy;
- `verify` changes nothing anywhere: Flux objects, the VM checkout, its env and status
  files and its containers are exactly as before, even when a target is unhealthy
  (it reports, it does not repair), and it says when the VM runs another revision;
- `bump --service` refuses a source no build recorded and the registry does not have
  (exit 2, nothing pushed) unless --allow-unbuilt, and refuses `:latest`.

Each test leaves the lab healthy for the next.
"""

from __future__ import annotations

import json

import pytest

from gitopsctl import repo as gitrepo
from gitopsctl.sandbox.lab.gitremote import git

from tests.e2e.drive import run_json

pytestmark = pytest.mark.e2e

COMPOSE_FILE = "clusters/homelab/backend-vm/docker-compose.yml"


def remote_head(lab) -> str:
    return gitrepo.resolve_commit(lab.remote.bare, "refs/heads/main")


def backend_containers(lab) -> list:
    return lab.client.containers.list(
        all=True, filters={"label": f"com.docker.compose.project={lab.compose_project}"})


def snapshot(lab) -> dict:
    """Everything verify must leave alone, on every side."""
    from gitopsctl.sandbox.lab.kube.store import GIT_REPOSITORIES, KUSTOMIZATIONS

    flux = {}
    for kind in (GIT_REPOSITORIES, KUSTOMIZATIONS):
        for obj in lab.kube.store.list(kind)[0]:
            meta = obj["metadata"]
            # Not resourceVersion: Flux itself may still be writing status (finishing an earlier
            # reconcile's health check); what verify could write is a request or a spec change.
            flux[f"{kind.kind}/{meta['name']}"] = (meta.get("generation"),
                                                   dict(meta.get("annotations") or {}))
    state = lab.vm_checkout / ".gitopsctl"
    return {
        "flux": flux,
        "vm_head": git(lab.vm_checkout, "rev-parse", "HEAD"),
        "vm_tracking": git(lab.vm_checkout, "rev-parse", "refs/remotes/origin/main"),
        "vm_files": {p.name: (p.stat().st_mtime_ns, p.stat().st_size)
                     for p in sorted(state.iterdir()) if p.is_file()},
        "containers": sorted((c.id, c.status, c.attrs["State"].get("StartedAt"))
                             for c in backend_containers(lab)),
        "remote": remote_head(lab),
    }


def sync_vm(lab) -> None:
    result = lab.gitopsctl("sync", cwd=lab.vm_checkout, env=lab.vm_env())
    assert result.returncode == 0, result.stderr


def test_on_a_healthy_homelab_status_and_verify_say_ok_and_verify_writes_nothing(shared_lab):
    lab = shared_lab
    code, status, err = run_json(lab, "status")
    assert code == 0 and status["ok"] is True and status["healthy"] is True, err
    before = snapshot(lab)
    assert "backend.env" in before["vm_files"] and before["containers"]
    code, report, err = run_json(lab, "verify")
    assert code == 0, err
    assert report["ok"] is True and report["healthy"] is True and report["changed"] is False
    revisions = {t["target"]: t for t in report["targets"]}
    assert revisions["backend"]["revision"] == before["vm_head"]
    assert any(c["name"] == "revision" and c["ok"] for c in revisions["backend"]["checks"])
    # no reconcile request (annotation), no sync, no container touched
    assert snapshot(lab) == before


def test_an_unhealthy_backend_makes_status_exit_1_and_verify_reports_without_repairing(shared_lab):
    lab = shared_lab
    for container in backend_containers(lab):
        container.stop(timeout=5)
    try:
        code, status, err = run_json(lab, "status")
        assert code == 1, (status, err)
        assert status["ok"] is False and status["healthy"] is False
        assert status["unhealthy"] == ["backend"]
        by_service = {s["service"]: s["health"] for s in status["services"]}
        assert by_service["backend"]["healthy"] is False and by_service["frontend"]["healthy"]
        text = lab.gitopsctl("status")
        assert text.returncode == 1 and "UNHEALTHY: backend" in text.stdout

        before = snapshot(lab)
        code, report, err = run_json(lab, "verify", "--target", "vm", "--timeout", "30")
        assert code == 1 and report["ok"] is False and report["healthy"] is False, err
        backend = report["targets"][0]
        assert backend["target"] == "backend" and not backend["healthy"]
        assert "exited" in backend["reason"] or "no container" in backend["reason"], backend
        # a read-only look: the stopped containers were not started, nothing was synced
        assert snapshot(lab) == before
        assert all(c.status == "exited" for c in backend_containers(lab))
    finally:
        sync_vm(lab)
    code, status, err = run_json(lab, "status")
    assert code == 0 and status["ok"] is True, err


def test_verify_says_when_the_vm_does_not_run_what_git_says_is_live(shared_lab):
    lab = shared_lab
    git(lab.remote.work, "pull", "-q", "--ff-only", "origin", "main")
    compose = lab.remote.work / COMPOSE_FILE
    lab.remote.write({COMPOSE_FILE: compose.read_text() + "# the VM has not synced this yet\n"})
    newer = lab.remote.commit_all("backend-vm: a comment the VM has not seen")
    lab.remote.push()
    try:
        before = snapshot(lab)
        code, report, err = run_json(lab, "verify", "--target", "vm", "--timeout", "30")
        assert code == 1 and report["ok"] is False, err
        assert report["revision"] == newer
        backend = report["targets"][0]
        revision = next(c for c in backend["checks"] if c["name"] == "revision")
        assert not revision["ok"] and "backend's files changed" in revision["message"], revision
        assert before["vm_head"][:12] in revision["message"]
        assert snapshot(lab) == before  # it did not sync the VM to fix it
    finally:
        sync_vm(lab)
    code, report, err = run_json(lab, "verify", "--target", "vm")
    assert code == 0, err


def test_bump_refuses_a_source_that_was_never_built_unless_told(shared_lab):
    lab = shared_lab
    sha = lab.commit_app_change({"examples/frontend/www/index.html": "<h1>never built</h1>\n"},
                                "app: a change nobody built")
    before_remote, before_ci = remote_head(lab), git(lab.ci, "rev-parse", "HEAD")
    code, doc, err = run_json(lab, "bump", "--service", "frontend", "--source", sha)
    assert code == 2, (doc, err)
    assert doc["ok"] is False and doc["error"]["kind"] == "input"
    assert "no build record" in doc["error"]["message"]
    assert f"has no {lab.registry.url}/homelab/frontend:{sha[:7]}" in doc["error"]["message"]
    assert "--allow-unbuilt" in doc["error"]["hint"] and "gitopsctl build" in doc["error"]["hint"]
    assert remote_head(lab) == before_remote and git(lab.ci, "rev-parse", "HEAD") == before_ci
    assert git(lab.ci, "status", "--porcelain") == ""

    # what check refuses, bump refuses: the moving tag latest
    latest = f"{lab.registry.url}/homelab/frontend:latest"
    code, doc, err = run_json(lab, "bump", "--policy", f"flux-system:frontend={latest}")
    assert code == 2 and "GOC005" in doc["error"]["message"] and "latest" in doc["error"]["message"]
    assert remote_head(lab) == before_remote and git(lab.ci, "status", "--porcelain") == ""

    # the explicit override: commits <repository>:<sha7> (kept local here: it would not run)
    code, doc, err = run_json(lab, "bump", "--service", "frontend", "--source", sha,
                              "--allow-unbuilt", "--no-push")
    try:
        assert code == 0 and doc["ok"] is True, err
        assert doc["bumps"][0]["image_from"] == "unbuilt"
        assert doc["bumps"][0]["image"] == f"{lab.registry.url}/homelab/frontend:{sha[:7]}"
        assert any("--allow-unbuilt" in note for note in doc["notes"])
        assert doc["committed"] and not doc["pushed"] and remote_head(lab) == before_remote
    finally:
        git(lab.ci, "checkout", "-q", "--detach", before_ci)


def test_bump_takes_a_built_image_from_the_registry_when_the_record_is_gone(shared_lab):
    lab = shared_lab
    sha = lab.commit_app_change({"examples/frontend/www/index.html": "<h1>built on another runner</h1>\n"},
                                "app: built elsewhere")
    code, built, err = run_json(lab, "build", "--source", sha, "--service", "frontend")
    assert code == 0, err
    record = lab.ci / ".gitopsctl" / "builds" / f"{sha}.json"
    digest = json.loads(record.read_text())["images"]["frontend"]["digest"]
    record.unlink()  # another runner built it: this one has no record, the registry has the image
    # (a dry run never asks the registry: it is what the offline pre-commit hook runs)
    code, doc, err = run_json(lab, "bump", "--service", "frontend", "--source", sha, "--no-commit")
    assert code == 0, err
    bump = doc["bumps"][0]
    assert bump["image_from"] == "registry"
    assert bump["image"] == f"{lab.registry.url}/homelab/frontend:{sha[:7]}@{digest}"
    git(lab.ci, "checkout", "-q", "--", ".")
    assert git(lab.ci, "status", "--porcelain") == ""


def test_every_json_ok_is_the_exit_code(shared_lab):
    lab = shared_lab
    for args in (["status", "--no-health"], ["check"], ["config"]):
        result = lab.gitopsctl("-o", "json", *args)
        doc = json.loads(result.stdout)
        assert doc["ok"] is (result.returncode == 0), (args, result.returncode, doc.get("ok"))
    remote_sync = lab.gitopsctl("-o", "json", "sync", "--check", cwd=lab.vm_checkout, env=lab.vm_env())
    assert json.loads(remote_sync.stdout)["ok"] is (remote_sync.returncode == 0)
    assert json.loads(remote_sync.stdout)["action"] == "checked"
