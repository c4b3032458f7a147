"""Image pull failures through the real CLI: a registry blip is ridden out, a missing image rolls back.

The lab's Docker engine builds the images, so the simulated kubelet would find a fresh
build locally; each test removes it after `build`, so the kubelet really pulls from the
registry, as a node of a real cluster does.
"""

from __future__ import annotations

import threading
import time

import pytest
import requests

from gitopsctl import repo as gitrepo
from gitopsctl.targets.rollout import PULL_FAILURE_GRACE, PULL_WAIT_REASONS

from tests.e2e.drive import records, run_json

pytestmark = pytest.mark.e2e


def _built(lab, files: dict[str, str], message: str) -> tuple[str, dict]:
    """A frontend change, built and pushed; (source SHA, the frontend image of its build)."""
    sha = lab.commit_app_change(files, message)
    code, doc, err = run_json(lab, "build", "--source", sha)
    assert code == 0, err
    image = doc["images"]["frontend"]
    lab.client.images.remove(image["image_id"], force=True)  # the kubelet must pull it
    return sha, image


def _pull_failures(lab, since: float) -> list:
    return [t for t in lab.kube.simulator.kubelet.transitions
            if t.at >= since and t.pod.startswith("frontend-") and t.reason in PULL_WAIT_REASONS]


def _stage_in_background(lab, sha: str) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def run() -> None:
        result["code"], result["doc"], result["err"] = run_json(lab, "stage", "--source", sha)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def test_a_registry_blip_during_the_pull_delays_the_deploy_but_does_not_roll_it_back(shared_lab):
    lab = shared_lab
    sha, _ = _built(lab, {"examples/frontend/www/index.html": "<h1>blip</h1>\n"}, "frontend: ride a blip")
    since = time.time()
    lab.registry.stop()
    try:
        thread, result = _stage_in_background(lab, sha)
        deadline = time.monotonic() + 120
        while len([t for t in _pull_failures(lab, since) if t.reason == "ErrImagePull"]) < 2:
            assert thread.is_alive(), f"stage ended before any pull failed: {result}"
            assert time.monotonic() < deadline, lab.cluster_summary()
            time.sleep(0.1)
    finally:
        lab.registry.start()
    thread.join(timeout=300)
    assert not thread.is_alive()
    assert result["code"] == 0, (result["err"], lab.cluster_summary())
    assert result["doc"]["outcome"] == "deployed"
    assert lab.served_version("frontend") == sha
    assert not [r for r in records(lab) if r.kind == "rollback" and r.source == sha]


def test_an_image_that_never_exists_is_rolled_back_after_the_pull_grace(shared_lab):
    lab = shared_lab
    before = lab.served_version("frontend")
    sha, image = _built(lab, {"examples/frontend/www/index.html": "<h1>gone</h1>\n"}, "frontend: lost image")
    repository = image["repository"].split("/", 1)[1]
    gone = requests.delete(f"{lab.registry.base_url}/v2/{repository}/manifests/{image['digest']}",
                           auth=(lab.registry.username, lab.registry.password), timeout=10)
    assert gone.status_code == 202, gone.text
    since = time.time()
    code, doc, err = run_json(lab, "stage", "--source", sha)
    assert code == 1, err
    assert doc["outcome"] == "rolled-back"
    failures = _pull_failures(lab, since)
    assert failures, lab.cluster_summary()
    log = records(lab)
    assert log[0].kind == "rollback" and log[0].source == sha
    message = gitrepo.open_repo(lab.remote.bare).commit(log[0].commit).message
    assert "ImagePullBackOff" in message or "ErrImagePull" in message, message
    # Judged only once the failure had outlasted the grace, not at the first failed pull.
    rolled_back_at = time.time()
    assert rolled_back_at - min(t.at for t in failures) >= PULL_FAILURE_GRACE - 1
    assert lab.served_version("frontend") == before

