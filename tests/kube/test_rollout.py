"""The frontend target against the emulator: real git remote, real `kubectl kustomize`,
real containers on the test Docker engine pulled from the test registry."""

from __future__ import annotations

import json
import textwrap
import threading
import time
from pathlib import Path

import pytest

from gitopsctl.config import HealthCheck, KubernetesTarget, ObjectRef, Workload
from gitopsctl.flux import git_revision
from gitopsctl.sandbox.lab.kube.store import KUSTOMIZATIONS, PODS
from gitopsctl.health import probe_http
from gitopsctl.targets.kubernetes import KubeTarget, ReconcileFailed

REPO_ROOT = Path(__file__).resolve().parents[2]

DETECTION_BUDGET = 2.0  # seconds from the API showing a failing state to gitopsctl reporting it


def _shown_at(cluster, report) -> float:
    """When the API first showed the reported pod failing: a failing waiting reason (e.g.
    ErrImagePull before the ImagePullBackOff that may be what gets reported) or a non-zero
    exit (state.terminated), which a crash-loop verdict may follow before any reason shows."""
    from gitopsctl.targets.rollout import FAILING_WAIT_REASONS

    times = [t.at for t in cluster.kube.simulator.kubelet.transitions
             if t.pod == report.details["pod"]
             and (t.reason in FAILING_WAIT_REASONS or (t.state == "terminated" and t.reason != "Completed"))]
    assert times, f"the simulator never showed {report.details}"
    return min(times)


def test_healthy_rollout_goes_live(cluster):
    target = cluster.target()
    sha = cluster.push(message="release 2")
    report = cluster.deploy(target, sha)
    assert report.healthy, report.to_dict()
    assert report.revision == git_revision("main", sha)
    assert [c.name for c in report.checks] == ["flux", "rollout", "pods", "http"]
    assert probe_http(cluster.health_url).ok
    # Flux itself agrees once its own health check has seen the rollout.
    ks = cluster.kube.store.get(KUSTOMIZATIONS, "flux-system", "apps")
    assert ks["status"]["lastAttemptedRevision"] == git_revision("main", sha)
    assert target.check_health().healthy


def test_crash_loop_is_reported_within_two_seconds_with_logs(cluster):
    target = cluster.target()
    sha = cluster.push(mode="crash", message="broken release")
    started = time.monotonic()
    report = cluster.deploy(target, sha)
    assert not report.healthy
    assert "CrashLoopBackOff" in report.reason and report.reason.startswith("frontend pod frontend-")
    assert "(restarts " in report.reason
    evidence = report.failed_check.evidence
    assert any("exiting at start on purpose" in line for line in evidence), evidence
    assert any("last exit code 1" in line for line in evidence), evidence
    latency = report.details["reported_at"] - _shown_at(cluster, report)
    assert 0 <= latency < DETECTION_BUDGET, latency
    # Fail fast: long before Flux's 30 s health-check timeout.
    assert time.monotonic() - started < 15
    # The old pod keeps serving: maxUnavailable 0 leaves it until the new one is available.
    assert probe_http(cluster.health_url).ok


def test_missing_image_is_err_image_pull(cluster):
    target = cluster.target()
    missing = cluster.image.rsplit(":", 1)[0] + ":does-not-exist"
    sha = cluster.push(image=missing, message="typo in tag")
    report = cluster.deploy(target, sha)
    assert not report.healthy
    assert report.details["pod_reason"] in ("ErrImagePull", "ImagePullBackOff"), report.reason
    assert "does-not-exist" in " ".join(report.failed_check.evidence)
    # A pull failure is a verdict only once it outlasts the grace (a registry blip is retried).
    from gitopsctl.targets.rollout import PULL_FAILURE_GRACE

    judged = _shown_at(cluster, report) + PULL_FAILURE_GRACE
    # (startTime, the grace's origin, is to the second and precedes the first failed pull)
    assert -2.0 <= report.details["reported_at"] - judged < DETECTION_BUDGET


def test_readiness_that_never_passes_hits_the_deadline(cluster):
    target = cluster.target()
    sha = cluster.push(mode="unhealthy", message="never ready")
    deadline = time.monotonic() + 5
    target.apply(sha, deadline)
    report = target.wait_healthy(sha, deadline)
    overshoot = time.monotonic() - deadline
    assert not report.healthy
    assert "rollout timed out" in report.reason, report.reason
    assert any("not ready" in line for line in report.failed_check.evidence), report.failed_check.evidence
    assert overshoot < 1.5, overshoot


def test_api_outage_mid_wait_is_survived(cluster):
    target = cluster.target()
    api = cluster.kube.api
    sha = cluster.push(message="release during outage")
    deadline = time.monotonic() + 60
    target.apply(sha, deadline)
    threading.Timer(0.2, api.refuse_connections).start()
    threading.Timer(2.5, api.accept_connections).start()
    report = target.wait_healthy(sha, deadline)
    assert report.healthy, report.to_dict()
    assert api.listening


def test_api_that_stays_down_fails_with_a_clear_reason_and_no_secret(cluster):
    target = cluster.target()
    sha = cluster.push(message="release, then the API dies")
    deadline = time.monotonic() + 60
    target.apply(sha, deadline)
    cluster.kube.api.refuse_connections()
    started = time.monotonic()
    report = target.wait_healthy(sha, deadline)
    assert not report.healthy
    assert "Kubernetes API" in report.reason
    assert "unreachable" in report.failed_check.message and "attempts" in report.failed_check.message
    assert time.monotonic() - started < 15  # bounded retries, not the whole deadline
    assert cluster.kube.token not in json.dumps(report.to_dict())


def test_503_409_and_slow_answers_are_retried(cluster):
    target = cluster.target()
    faults = cluster.kube.faults
    sha = cluster.push(message="release on a bad day")
    faults.patch_conflicts = 2
    faults.latency = 0.2
    deadline = time.monotonic() + 60
    target.apply(sha, deadline)
    assert faults.patch_conflicts == 0  # both conflicts were answered and retried
    faults.latency = 0.0
    faults.unavailable = True
    threading.Timer(1.5, lambda: setattr(faults, "unavailable", False)).start()
    report = target.wait_healthy(sha, deadline)
    assert report.healthy, report.to_dict()


def test_watch_stream_drops_and_expiry_are_rewatched(cluster):
    target = cluster.target()
    faults = cluster.kube.faults
    faults.watch_max_seconds = 0.4  # every watch is cut mid-stream
    faults.expire_watches = 2  # and two of the re-watches get 410 Gone
    # Starts, is never ready, and dies after 3 s: the crash arrives through a re-watch.
    late_crash = ["/bin/sh", "-c", "echo starting; sleep 3; echo giving up late >&2; exit 3"]
    sha = cluster.push(command=late_crash, message="dies late, flaky watch")
    deadline = time.monotonic() + 60
    target.apply(sha, deadline)
    # A 503 spell while streams are being re-opened: re-lists retry through it.
    threading.Timer(1.0, lambda: setattr(faults, "unavailable", True)).start()
    threading.Timer(1.6, lambda: setattr(faults, "unavailable", False)).start()
    report = target.wait_healthy(sha, deadline)
    assert "CrashLoopBackOff" in report.reason, report.to_dict()
    assert report.details["relists"] >= 3
    assert faults.expire_watches == 0
    assert cluster.kube.api.stats.watches_dropped >= 3
    assert any("giving up late" in line for line in report.failed_check.evidence)
    assert report.details["reported_at"] - _shown_at(cluster, report) < DETECTION_BUDGET


def test_slow_api_fails_with_a_timeout_reason(cluster):
    from gitopsctl.targets.kubeapi import KubeApi, RetryPolicy

    policy = RetryPolicy(attempts=3, first_delay=0.1, read_timeout=0.5)
    target = cluster.target(kube=KubeApi(cluster.kube.kubeconfig, policy=policy))
    cluster.kube.faults.latency = 1.5
    with pytest.raises(ReconcileFailed) as caught:
        target.apply(cluster.remote.head(), time.monotonic() + 30)
    assert "no answer within 0.5s" in caught.value.report.failed_check.message
    assert "after 3 attempts" in caught.value.report.failed_check.message


def test_kustomization_that_does_not_build_fails_apply(cluster):
    target = cluster.target()
    broken = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - missing.yaml\n"
    sha = cluster.push(files={f"{cluster.app_path}/kustomization.yaml": broken}, message="broken kustomization")
    with pytest.raises(ReconcileFailed) as caught:
        target.apply(sha, time.monotonic() + 30)
    report = caught.value.report
    assert report.reason == "frontend Kustomization BuildFailed"
    assert "missing.yaml" in report.failed_check.message
    assert caught.value.exit_code == 1


@pytest.mark.parametrize("cancel", [False, True], ids=["hold-back", "cancel-on-new-revision"])
def test_health_check_phase_holds_back_a_newer_revision(cluster, cancel):
    """kustomize-controller finishes (or times out) its health check before a newer revision,
    unless CancelHealthCheckOnNewRevision is on: rollback timings measured here are honest."""
    from gitopsctl.sandbox.lab.kube.store import KUSTOMIZATIONS as KS

    cluster.kube.store.patch(KS, "flux-system", "apps", {"spec": {"timeout": "4s"}})
    cluster.kube.simulator.cancel_health_check_on_new_revision = cancel
    target = cluster.target()
    bad = cluster.push(mode="crash", message="bad")
    target.apply(bad, time.monotonic() + 30)
    good = cluster.push(message="revert of bad")
    started = time.monotonic()
    report = cluster.deploy(target, good, timeout=30)
    took = time.monotonic() - started
    assert report.healthy, report.to_dict()
    if cancel:
        assert took < 3.5, took
    else:
        assert took > 2.5, took  # waited for the bad revision's health check to time out


def test_homelab_manifests_run_unchanged(kube, make_git_remote, frontend_image):
    """clusters/homelab/apps/frontend as the repository has it (two replicas, LISTEN=0.0.0.0,
    port 8080, a ClusterIP Service on port 80); the overlay only points the image at the
    test registry and shortens the readiness period."""
    repository, tag = frontend_image.rsplit(":", 1)
    overlay = textwrap.dedent(f"""\
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        resources:
          - ../../homelab/apps/frontend
        images:
          - name: harbor.lan/homelab/frontend
            newName: {repository}
            newTag: {tag}
        patches:
          - target:
              kind: Deployment
              name: frontend
            patch: |-
              - op: replace
                path: /spec/template/spec/containers/0/readinessProbe/periodSeconds
                value: 1
        """)
    remote = make_git_remote(seed={"clusters/homelab/apps/frontend": REPO_ROOT / "clusters/homelab/apps/frontend"},
                             files={"clusters/test/overlay/kustomization.yaml": overlay})
    kube.add_git_repository("flux-system", url=remote.url, branch="main")
    kube.add_kustomization("apps", path="./clusters/test/overlay", wait=True, timeout="30s")
    deadline = time.monotonic() + 40
    while kube.service_address("frontend") is None and time.monotonic() < deadline:
        time.sleep(0.1)
    url = f"http://{kube.service_address('frontend')}/healthz"
    settings = KubernetesTarget(kind="kubernetes", git_repository=ObjectRef("flux-system"),
                                kustomizations=(ObjectRef("apps"),), kubeconfig=str(kube.kubeconfig))
    target = KubeTarget(settings, environ={}, healthy_samples=2,
                        workloads=(Workload("Deployment", "frontend", "default"),),
                        health=(HealthCheck(http=url),))
    sha = remote.head()
    target.apply(sha, deadline)
    report = target.wait_healthy(sha, deadline)
    assert report.healthy, report.to_dict()
    pods, _ = kube.store.list(PODS, "default")
    ips = {p["status"]["podIP"] for p in pods}
    assert len(pods) == 2 and len(ips) == 2  # two replicas, both on port 8080, own addresses
    assert probe_http(url).message.startswith("HTTP 200 ok frontend")


def test_oom_killed_loop_is_reported_as_oomkilled(cluster):
    target = cluster.target()
    hog = ["/bin/sh", "-c", "echo allocating; x=$(head -c 200000000 /dev/zero | tr '\\000' a); sleep 30"]
    sha = cluster.push(command=hog, memory="16Mi", message="memory hog")
    report = cluster.deploy(target, sha)
    assert report.details.get("pod_reason") == "OOMKilled", report.to_dict()
    assert "exit code 137" in " ".join(report.failed_check.evidence)



def test_suspended_kustomization_fails_apply_with_a_hint(cluster):
    cluster.kube.store.patch(KUSTOMIZATIONS, "flux-system", "apps", {"spec": {"suspend": True}})
    sha = cluster.push(message="release while suspended")
    with pytest.raises(ReconcileFailed) as caught:
        cluster.target().apply(sha, time.monotonic() + 20)
    assert caught.value.report.reason == "frontend Kustomization Suspended"
    assert "flux resume kustomization apps" in caught.value.hint


def test_digest_pinned_image_is_pulled_and_runs(cluster, frontend_build):
    """Deploy commits pin `repository:tag@sha256:...`; the kubelet pulls by digest."""
    ref, digest = frontend_build
    report = cluster.deploy(cluster.target(), cluster.push(image=f"{ref}@{digest}", message="pinned"))
    assert report.healthy, report.to_dict()
    pods, _ = cluster.kube.store.list(PODS, "web")
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {f"{ref}@{digest}"}


def test_flux_health_check_failure_ends_the_wait_with_its_reason(cluster):
    """If Flux's own health check gives up first (spec.timeout shorter than our deadline),
    its HealthCheckFailed verdict ends the wait with Flux's message."""
    cluster.kube.store.patch(KUSTOMIZATIONS, "flux-system", "apps", {"spec": {"timeout": "3s"}})
    target = cluster.target()
    sha = cluster.push(mode="unhealthy", message="never ready, short Flux timeout")
    started = time.monotonic()
    report = cluster.deploy(target, sha, timeout=30)
    assert report.reason == "frontend Kustomization HealthCheckFailed", report.to_dict()
    assert "timeout waiting for: [Deployment/web/frontend status: 'InProgress']" in report.failed_check.message
    # Gate off, our request waits behind the running check; when that check fails Flux starts
    # the queued reconcile within milliseconds, so a once-a-second look may only see the second
    # HealthCheckFailed: two timeouts plus a look, still well inside our 30 s deadline.
    assert time.monotonic() - started < 12


def test_failing_liveness_probe_restarts_and_is_caught_during_http_sampling(cluster):
    """Ready (so the rollout completes), but the liveness probe path 404s: the kubelet kills
    the container, and the watch still running while HTTP samples are taken reports it."""
    target = cluster.target(healthy_samples=20)
    sha = cluster.push(liveness_path="/no-such-path", message="bad liveness probe")
    report = cluster.deploy(target, sha, timeout=30)
    assert "CrashLoopBackOff" in report.reason, report.to_dict()
    assert "last exit code 137" in report.failed_check.evidence  # killed, not exited
