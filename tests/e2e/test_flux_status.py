"""Flux as the homelab runs it (CancelHealthCheckOnNewRevision on), read right by `stage`.

kustomize-controller 1.8 cancels a running health check on any event that re-queues the
Kustomization, gitopsctl's own reconcile request included, and reports Ready=False
HealthCheckCanceled before it starts over. A deploy must ride through that, not roll back.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from gitopsctl.sandbox.lab.kube.store import KUSTOMIZATIONS

from tests.e2e.drive import build, records, run_json

pytestmark = pytest.mark.e2e


@contextmanager
def apps_spec(lab, **changes):
    """The Kustomization `apps` with `changes` merged into its spec, restored on the way out."""
    store = lab.kube.store
    spec = store.get(KUSTOMIZATIONS, "flux-system", "apps")["spec"]
    before = {key: spec.get(key) for key in changes}
    store.patch(KUSTOMIZATIONS, "flux-system", "apps", {"spec": changes})
    try:
        yield
    finally:
        store.patch(KUSTOMIZATIONS, "flux-system", "apps", {"spec": before})


def stage_commit(lab, page: str, message: str):
    sha = lab.commit_app_change({"examples/frontend/www/index.html": page}, message)
    build(lab, sha)
    return sha, run_json(lab, "stage", "--source", sha)


def test_our_own_request_cancelling_the_health_check_still_deploys(shared_lab):
    lab = shared_lab
    kustomize = lab.kube.simulator.kustomize
    assert kustomize.cancel_health_check_on_new_revision  # as clusters/homelab/flux-system sets it
    before = len(kustomize.cancellations)
    # `apps` dependsOn `routing`, so on a new revision it waits for routing and its health
    # check starts with our request, not before it. Without the dependency (the homelab as it
    # was, or any Kustomization with none) the source event starts the check first: that
    # check is the one our own request must cancel and ride through.
    with apps_spec(lab, dependsOn=None):
        sha, (code, doc, err) = stage_commit(lab, "<h1>canceled once</h1>\n",
                                             "app: frontend release whose health check our request cancels")
    assert code == 0, err
    assert doc["outcome"] == "deployed", doc
    ours = [c for c in kustomize.cancellations[before:] if c.trigger == "Kustomization/flux-system/apps"]
    assert ours, kustomize.cancellations[before:]  # the cancel did happen, and was ridden through
    assert [r.kind for r in records(lab, sha)] == ["deploy", "deploy"]  # frontend and backend, no rollback
    assert lab.served_version("frontend") == sha
    assert lab.served_version("backend") == sha


def test_a_missing_kustomization_path_fails_the_deploy_with_flux_reason_not_a_timeout(shared_lab):
    """ArtifactFailed never moves lastAttemptedRevision; once Flux has handled our request it
    is the verdict, so stage fails at once with Flux's message instead of waiting out its
    deadline."""
    lab = shared_lab
    with apps_spec(lab, path="./clusters/homelab/no-such-app"):
        sha, (code, doc, err) = stage_commit(lab, "<h1>never applied</h1>\n",
                                             "app: frontend release Flux cannot find")
    assert code != 0, doc
    step = next(s for s in doc["steps"] if s["name"] == "frontend healthy")
    assert (step["status"], step["detail"]) == ("failed", "frontend Kustomization ArtifactFailed"), step
    assert "kustomization path not found" in step["data"]["checks"][0]["message"], step
    assert step["elapsed_seconds"] < 20, step  # Flux's verdict, not our deadline
    # The revert cannot apply either while the path is missing, so the rollback fails too
    # (exit 3: a human is needed) ...
    assert (code, doc["outcome"]) == (3, "rollback-failed"), doc["outcome"]
    # ... and with the path back, Flux converges on the revert: the lab is whole again.
    code, doc, err = run_json(lab, "verify")
    assert code == 0, err
    assert lab.served_version("frontend") == lab.served_version("backend") != sha
