"""The emulator's Flux against kustomize-controller's own rules, read over HTTPS with the real
kubernetes client (gitopsctl's KubeApi), and gitopsctl's reading of them.

Each rule names the source it follows in gitopsctl/sandbox/lab/kube/fluxsim.py. Time is scaled
where a test would otherwise wait out a Flux default (the 30s timeout floor, the 5s health
poll, the 30s dependency requeue), through FluxOptions, never by patching the simulator.
"""

from __future__ import annotations

import re
import time

import pytest

from gitopsctl import flux
from gitopsctl.sandbox.lab.kube import FluxOptions, KubeEmulator
from gitopsctl.sandbox.lab.kube.fluxsim import KustomizeController
from gitopsctl.sandbox.lab.kube.store import Store, wait_until
from gitopsctl.sandbox.lab.ports import free_port
from gitopsctl.targets.kubeapi import KubeApi
from gitopsctl.targets.kubernetes import ReconcileFailed
from tests.kube.conftest import (APP_PATH, KUSTOMIZATION_YAML, NAMESPACE, Cluster, deployment_yaml,
                                 service_yaml)

FAST = dict(health_check_timeout_floor=1.0, health_check_poll_interval=0.2, dependency_requeue_interval=1.0)
KS = (flux.KUSTOMIZE_GROUP, flux.KUSTOMIZE_VERSION, flux.KUSTOMIZATIONS, "flux-system")


@pytest.fixture
def make_cluster(tmp_path, docker_client, registry, make_git_remote, frontend_image):
    """A live cluster (first release healthy) whose Flux runs with the options given."""
    started: list[KubeEmulator] = []

    def make(*, timeout: str = "30s", **options) -> Cluster:
        auth = {registry.url: {"username": registry.username, "password": registry.password}}
        kube = KubeEmulator(tmp_path / f"kube{len(started)}", docker_client=docker_client, registry_auth=auth,
                            restart_backoff=0.5, max_backoff=2.0, flux=FluxOptions(**{**FAST, **options}))
        started.append(kube.start())
        port, node_port = free_port(), free_port()
        remote = make_git_remote(files={f"{APP_PATH}/kustomization.yaml": KUSTOMIZATION_YAML,
                                        f"{APP_PATH}/deployment.yaml": deployment_yaml(frontend_image, port=port),
                                        f"{APP_PATH}/service.yaml": service_yaml(port, node_port)})
        kube.add_git_repository("flux-system", url=remote.url, branch="main")
        kube.add_kustomization("apps", path=f"./{APP_PATH}", wait=True, timeout=timeout,
                               target_namespace=NAMESPACE)
        cluster = Cluster(kube, remote, frontend_image, port, node_port)
        wait_until(lambda: ready(api(cluster)).get("reason") == "ReconciliationSucceeded", 40)
        return cluster

    yield make
    for kube in started:
        errors = list(kube.simulator.errors)
        kube.stop()
        assert not errors, f"simulator errors: {errors}"


def api(cluster: Cluster) -> dict:
    """The Kustomization as the API server answers it."""
    return KubeApi(cluster.kube.kubeconfig).get_custom(*KS, "apps", deadline=time.monotonic() + 10)


def condition(ks: dict, type_: str = "Ready") -> dict:
    return next((c for c in (ks.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


ready = condition


def request(cluster: Cluster, name: str = "apps", plural: str = flux.KUSTOMIZATIONS) -> str:
    token = flux.request_token()
    group = flux.SOURCE_GROUP if plural == flux.GIT_REPOSITORIES else flux.KUSTOMIZE_GROUP
    KubeApi(cluster.kube.kubeconfig).patch_custom(group, "v1", plural, "flux-system", name,
                                                  {"metadata": {"annotations": {flux.REQUESTED_AT: token}}},
                                                  deadline=time.monotonic() + 10)
    return token


def patch_spec(cluster: Cluster, spec: dict, name: str = "apps") -> None:
    KubeApi(cluster.kube.kubeconfig).patch_custom(*KS, name, {"spec": spec}, deadline=time.monotonic() + 10)


def until(cluster: Cluster, predicate, timeout: float = 30) -> dict:
    """The first Kustomization read that satisfies predicate."""
    deadline = time.monotonic() + timeout
    while True:
        ks = api(cluster)
        if predicate(ks):
            return ks
        assert time.monotonic() < deadline, f"never happened; last status: {ks.get('status')}"
        time.sleep(0.05)


def release(cluster: Cluster, **push) -> str:
    """Push a commit and have the GitRepository fetch it (its interval is 1m); the SHA. The
    Kustomization then reconciles on the source event, as with Flux."""
    sha = cluster.push(**push)
    token = request(cluster, "flux-system", flux.GIT_REPOSITORIES)
    client = KubeApi(cluster.kube.kubeconfig)
    wait_until(lambda: (lambda r: r["status"].get("lastHandledReconcileAt") == token
                        and r["status"]["artifact"]["revision"] == revision(sha))(
        client.get_custom(flux.SOURCE_GROUP, "v1", flux.GIT_REPOSITORIES, "flux-system", "flux-system",
                          deadline=time.monotonic() + 10)), 20)
    return sha


def revision(sha: str) -> str:
    return flux.git_revision("main", sha)


def health_checking(sha: str):
    return lambda ks: (condition(ks, "Reconciling").get("message", "").startswith(
        f"Running health checks for revision {revision(sha)}"))


def with_progress_deadline(text: str, seconds: int) -> str:
    return text.replace("spec:\n  replicas:", f"spec:\n  progressDeadlineSeconds: {seconds}\n  replicas:", 1)


# -- status details (kustomize-controller finalizeStatus) ----------------------------------


def test_last_handled_reconcile_at_is_written_when_the_reconcile_ends(make_cluster):
    cluster = make_cluster(timeout="3s")
    recorder = Recorder(cluster)
    sha = release(cluster, mode="unhealthy", message="never ready")
    until(cluster, health_checking(sha))
    token = request(cluster)
    after = until(cluster, lambda ks: ks["status"].get("lastHandledReconcileAt") == token, timeout=20)
    recorder.stop()
    # the request was reconciled (gate off: after the running check), and recorded at its end
    assert ready(after)["reason"] == "HealthCheckFailed"
    assert after["status"]["lastAttemptedRevision"] == revision(sha)
    running = [s for s in recorder.of() if ready(s).get("status") == "Unknown"]
    assert running and all(s["status"].get("lastHandledReconcileAt") != token for s in running)


def test_a_failed_reconcile_keeps_reconciling_with_retry_and_leaves_observed_generation(make_cluster):
    cluster = make_cluster(timeout="2s")
    before = api(cluster)
    generation = before["metadata"]["generation"]
    assert before["status"]["observedGeneration"] == generation
    assert not condition(before, "Reconciling")  # removed on success
    release(cluster, mode="unhealthy", message="never ready")
    until(cluster, lambda ks: ready(ks).get("reason") == "HealthCheckFailed")
    patch_spec(cluster, {"interval": "9m"})  # a new generation, reconciled and failed
    failed = until(cluster, lambda ks: ready(ks).get("reason") == "HealthCheckFailed"
                   and ready(ks).get("observedGeneration") == generation + 1)
    assert failed["status"]["observedGeneration"] == generation
    reconciling = condition(failed, "Reconciling")
    assert (reconciling["status"], reconciling["reason"]) == ("True", "ProgressingWithRetry")
    assert condition(failed, "Healthy")["status"] == "False"
    good = release(cluster, message="fixed")
    healed = until(cluster, lambda ks: ks["status"].get("lastAppliedRevision") == revision(good)
                   and ready(ks).get("status") == "True")
    assert healed["status"]["observedGeneration"] == generation + 1
    assert not condition(healed, "Reconciling")
    assert condition(healed, "Healthy")["reason"] == "Succeeded"


@pytest.mark.parametrize(("interval", "timeout", "expected"), [
    ("10m", None, "9m30s"), ("5m", None, "4m30s"), ("45s", None, "30s"), ("10m", "2m", "2m0s"),
    ("10m", "5s", "30s"), ("1h", None, "59m30s")])
def test_default_health_check_timeout_is_interval_less_30s_never_under_30s(interval, timeout, expected):
    """kustomize-controller api/v1/kustomization_types.go GetTimeout."""
    from gitopsctl.sandbox.lab.kube.fluxstatus import format_duration

    controller = KustomizeController(Store(), "/tmp")
    spec = {"interval": interval, **({"timeout": timeout} if timeout else {})}
    assert format_duration(controller.timeout(spec)) == expected


def test_the_timeout_flux_reports_is_the_default_one(make_cluster):
    cluster = make_cluster(timeout="", health_check_timeout_floor=30.0)
    recorder = Recorder(cluster)
    patch_spec(cluster, {"interval": "45s"})
    until(cluster, lambda ks: ks["status"]["observedGeneration"] == ks["metadata"]["generation"] == 2)
    recorder.stop()
    messages = {condition(s, "Reconciling").get("message") for s in recorder.of()}
    current = api(cluster)["status"]["lastAppliedRevision"]
    assert f"Running health checks for revision {current} with a timeout of 30s" in messages, messages
    assert f"Fetching manifests for revision {current} with a timeout of 30s" in messages, messages


# -- dependsOn (kustomize-controller checkDependencies) ------------------------------------


INFRA = "clusters/test/infra"


def test_depends_on_waits_for_the_dependency_ready_at_its_generation(make_cluster):
    cluster = make_cluster()
    kube = cluster.kube
    config_map = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: b\n"
    release(cluster, files={f"{INFRA}/kustomization.yaml": "resources:\n  - settings.yaml\n",
                            f"{INFRA}/settings.yaml": config_map}, message="infra")
    kube.add_kustomization("infra", path="./no-such-dir")
    kube.add_kustomization("needs-infra", path=f"./{INFRA}", depends_on=["infra"], target_namespace="other")
    client = KubeApi(kube.kubeconfig)

    def named(name: str, predicate) -> dict:
        return wait_until(lambda: (lambda ks: ks if predicate(ks) else None)(
            client.get_custom(*KS, name, deadline=time.monotonic() + 10)), 20)

    dependent = named("needs-infra", lambda ks: ready(ks).get("reason") == "DependencyNotReady")
    assert ready(dependent)["message"] == "dependency 'flux-system/infra' is not ready"
    assert "lastAttemptedRevision" not in dependent["status"]
    assert ready(named("infra", lambda ks: bool(ready(ks))))["reason"] == "ArtifactFailed"
    patch_spec(cluster, {"path": f"./{INFRA}", "targetNamespace": "infra"}, name="infra")
    infra = named("infra", lambda ks: ready(ks).get("status") == "True")
    assert infra["status"]["observedGeneration"] == 2
    done = named("needs-infra", lambda ks: ready(ks).get("status") == "True")  # retried on its requeue
    assert ready(done)["reason"] == "ReconciliationSucceeded"
    assert done["status"]["lastAppliedRevision"] == infra["status"]["lastAppliedRevision"]


# -- artifact and build errors --------------------------------------------------------------


def test_missing_path_is_artifact_failed_and_leaves_last_attempted_revision(make_cluster):
    cluster = make_cluster()
    before = api(cluster)["status"]["lastAttemptedRevision"]
    patch_spec(cluster, {"path": "./clusters/no-such-app"})
    ks = until(cluster, lambda ks: ready(ks).get("reason") == "ArtifactFailed")
    assert re.fullmatch(r"kustomization path not found: stat /\S+/clusters/no-such-app: no such file or directory",
                        ready(ks)["message"]), ready(ks)["message"]
    assert ks["status"]["lastAttemptedRevision"] == before
    # gitopsctl: a failure once our request is handled, with Flux's message, not a timeout
    sha = cluster.push(message="next release")
    started = time.monotonic()
    with pytest.raises(ReconcileFailed) as caught:
        cluster.target().apply(sha, time.monotonic() + 30)
    assert caught.value.report.reason == "frontend Kustomization ArtifactFailed"
    assert "kustomization path not found" in caught.value.report.failed_check.message
    assert time.monotonic() - started < 10


def test_a_build_error_is_build_failed_at_the_attempted_revision(make_cluster):
    cluster = make_cluster()
    broken = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - missing.yaml\n"
    sha = release(cluster, files={f"{APP_PATH}/kustomization.yaml": broken}, message="broken")
    ks = until(cluster, lambda ks: ready(ks).get("reason") == "BuildFailed")
    assert ks["status"]["lastAttemptedRevision"] == revision(sha)
    assert "missing.yaml" in ready(ks)["message"]


# -- the server-side dry-run of the whole batch ---------------------------------------------


def test_an_unserved_kind_fails_the_whole_batch_and_applies_nothing(make_cluster):
    cluster = make_cluster()
    automation = ("apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageUpdateAutomation\n"
                  "metadata:\n  name: x\n  namespace: flux-system\nspec:\n  interval: 1m\n")
    kustomization = KUSTOMIZATION_YAML + "  - automation.yaml\n"
    release_before = _release(cluster)
    sha = cluster.push(files={f"{APP_PATH}/automation.yaml": automation,
                              f"{APP_PATH}/kustomization.yaml": kustomization}, message="old API version")
    with pytest.raises(ReconcileFailed) as caught:
        cluster.target().apply(sha, time.monotonic() + 30)
    assert caught.value.report.reason == "frontend Kustomization ReconciliationFailed"
    ks = api(cluster)
    assert ready(ks)["message"].startswith(
        'ImageUpdateAutomation/web/x dry-run failed: no matches for kind "ImageUpdateAutomation" '
        'in version "image.toolkit.fluxcd.io/v1beta2"')
    assert ks["status"]["lastAttemptedRevision"] == revision(sha)
    assert _release(cluster) == release_before  # the Deployment of the same batch was not applied
    look = cluster.target().check_health()
    assert not look.healthy and look.failed_check.name == "flux", look.to_dict()


def test_a_field_the_schema_does_not_declare_fails_the_whole_batch(make_cluster):
    cluster = make_cluster()
    release_before = _release(cluster)
    text = deployment_yaml(cluster.image, port=cluster.port, release="typo").replace(
        "spec:\n  replicas:", "spec:\n  replica: 2\n  replicas:", 1)
    sha = release(cluster, files={f"{APP_PATH}/deployment.yaml": text}, message="typo in the spec")
    ks = until(cluster, lambda ks: ready(ks).get("reason") == "ReconciliationFailed")
    assert ready(ks)["message"] == (
        f"Deployment/{NAMESPACE}/frontend dry-run failed (BadRequest): failed to create typed patch object "
        f"({NAMESPACE}/frontend; apps/v1, Kind=Deployment): .spec.replica: field not declared in schema\n")
    assert ks["status"]["lastAttemptedRevision"] == revision(sha)
    assert _release(cluster) == release_before


def _release(cluster: Cluster) -> str:
    dep = KubeApi(cluster.kube.kubeconfig).get_deployment(NAMESPACE, "frontend", deadline=time.monotonic() + 10)
    env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
    return next(e["value"] for e in env if e["name"] == "RELEASE")


# -- fail fast (fluxcd/pkg ssa/manager_wait.go, cli-utils kstatus) ---------------------------


def test_progress_deadline_exceeded_fails_the_health_check_at_once(make_cluster):
    cluster = make_cluster(timeout="2m")
    text = with_progress_deadline(deployment_yaml(cluster.image, port=cluster.port, mode="unhealthy",
                                                  release="stuck"), 2)
    started = time.monotonic()
    sha = release(cluster, files={f"{APP_PATH}/deployment.yaml": text}, message="stuck rollout")
    ks = until(cluster, lambda ks: ready(ks).get("reason") == "HealthCheckFailed", timeout=30)
    took = time.monotonic() - started
    assert took < 15, took  # not spec.timeout (2m)
    assert re.fullmatch(r"health check failed after [0-9.]+s: failed early due to stalled resources: "
                        rf"\[Deployment/{NAMESPACE}/frontend status: 'Failed'\]", ready(ks)["message"]), \
        ready(ks)["message"]
    assert ks["status"]["lastAttemptedRevision"] == revision(sha)


# -- HealthCheckCanceled (CancelHealthCheckOnNewRevision) -----------------------------------


def test_gate_on_any_requeue_event_cancels_the_health_check_and_starts_over(make_cluster):
    cluster = make_cluster(timeout="2m", cancel_health_check_on_new_revision=True)
    kube = cluster.kube
    recorder = Recorder(cluster)
    sha = release(cluster, mode="unhealthy", message="never ready")
    until(cluster, health_checking(sha))
    first = request(cluster)
    wait_until(lambda: kube.simulator.kustomize.cancellations, 10)
    canceled = kube.simulator.kustomize.cancellations[0]
    assert (canceled.trigger, canceled.revision) == ("Kustomization/flux-system/apps", revision(sha))
    again = until(cluster, health_checking(sha), timeout=5)  # re-queued at once, checking again
    assert condition(again, "Reconciling")["reason"] == "Progressing"
    assert again["status"].get("lastHandledReconcileAt") != first  # written when this run ends
    # a new source revision is an event too
    fixed = release(cluster, message="fix")
    wait_until(lambda: len(kube.simulator.kustomize.cancellations) >= 2, 10)
    assert kube.simulator.kustomize.cancellations[1].trigger == "GitRepository/flux-system/flux-system"
    healed = until(cluster, lambda ks: ks["status"].get("lastAppliedRevision") == revision(fixed), timeout=30)
    assert ready(healed)["status"] == "True"
    assert healed["status"]["lastHandledReconcileAt"] == first
    recorder.stop()
    states = [s for s in recorder.of() if ready(s).get("reason") == "HealthCheckCanceled"]
    assert [ready(s)["message"] for s in states][:2] == [
        "New reconciliation triggered by Kustomization/flux-system/apps",
        "New reconciliation triggered by GitRepository/flux-system/flux-system"]
    assert all(ready(s)["status"] == "False" for s in states)
    assert all(condition(s, "Reconciling")["reason"] == "ProgressingWithRetry" for s in states)
    assert states[0]["status"].get("lastHandledReconcileAt") != first  # the canceled run read the old one


def test_gate_off_a_request_waits_for_the_health_check_to_end(make_cluster):
    cluster = make_cluster(timeout="4s", cancel_health_check_on_new_revision=False)
    recorder = Recorder(cluster)
    sha = release(cluster, mode="unhealthy", message="never ready")
    until(cluster, health_checking(sha))
    token = request(cluster)
    failed = until(cluster, lambda ks: ready(ks).get("reason") == "HealthCheckFailed", timeout=15)
    assert re.fullmatch(r"health check failed after 4(\.\d+)?s: timeout waiting for: "
                        rf"\[Deployment/{NAMESPACE}/frontend status: 'InProgress'\]", ready(failed)["message"])
    # the queued request is reconciled right after, and handled when that run ends
    until(cluster, lambda ks: ks["status"].get("lastHandledReconcileAt") == token, timeout=15)
    recorder.stop()
    assert not cluster.kube.simulator.kustomize.cancellations
    assert not any(ready(s).get("reason") == "HealthCheckCanceled" for s in recorder.of())


def test_our_own_request_cancelling_the_check_is_pending_not_a_failure(make_cluster):
    """gitopsctl requests the GitRepository, then the Kustomization: by then Flux is already
    health-checking our revision (the source event came first), so our request cancels it."""
    cluster = make_cluster(timeout="2m", cancel_health_check_on_new_revision=True,
                           health_check_poll_interval=5.0)
    target = cluster.target()
    sha = cluster.push(message="good release")
    report = cluster.deploy(target, sha, timeout=60)
    assert report.healthy, report.to_dict()
    # one look right after: Flux is still in its (5s-polled) health check, which is not a failure
    look = target.check_health()
    assert look.healthy, look.to_dict()
    cancels = [c for c in cluster.kube.simulator.kustomize.cancellations if c.revision == revision(sha)]
    assert [c.trigger for c in cancels] == ["Kustomization/flux-system/apps"], cancels
    until(cluster, lambda ks: ready(ks).get("status") == "True"
          and ks["status"]["lastAppliedRevision"] == revision(sha), timeout=30)


class Recorder:
    """Every state of the Kustomizations, from a watch with the real kubernetes client."""

    def __init__(self, cluster: Cluster):
        import threading

        from kubernetes import client, config, watch

        self.states: list[dict] = []
        self.error: Exception | None = None
        self._watch = watch.Watch()
        api_client = config.new_client_from_config(config_file=str(cluster.kube.kubeconfig))
        self._api = client.CustomObjectsApi(api_client)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        wait_until(lambda: self.states, 10)  # the watch's initial ADDED events are in

    def _run(self) -> None:
        try:
            for event in self._watch.stream(self._api.list_namespaced_custom_object, flux.KUSTOMIZE_GROUP, "v1",
                                            "flux-system", flux.KUSTOMIZATIONS, timeout_seconds=120):
                self.states.append(event["object"])
        except Exception as exc:  # noqa: BLE001 - the emulator stopping cuts the stream
            self.error = exc

    def of(self, name: str = "apps") -> list[dict]:
        return [s for s in list(self.states) if s["metadata"]["name"] == name]

    def stop(self) -> None:
        self._watch.stop()


# -- source-controller ------------------------------------------------------------------------


def test_git_repository_failure_keeps_observed_generation_and_retries(tmp_path):
    with KubeEmulator(tmp_path / "kube") as kube:
        kube.add_git_repository("broken", url=str(tmp_path / "no-such-repo"))
        client = KubeApi(kube.kubeconfig)
        repo = wait_until(lambda: (lambda r: r if condition(r).get("status") == "False" else None)(
            client.get_custom(flux.SOURCE_GROUP, "v1", flux.GIT_REPOSITORIES, "flux-system", "broken",
                              deadline=time.monotonic() + 10)), 10)
        assert condition(repo)["reason"] == "GitOperationFailed"
        assert condition(repo, "FetchFailed")["status"] == "True"
        assert condition(repo, "Reconciling")["reason"] == "ProgressingWithRetry"
        assert "observedGeneration" not in repo["status"]


# -- gitopsctl's verdicts on the statuses above -----------------------------------------------

SHA = "0123456789abcdef0123456789abcdef01234567"
OLD = "fedcba9876543210fedcba9876543210fedcba98"


def _ks(ready_: tuple[str, str, str], *, attempted: str = SHA, handled: str = "", reconciling=None) -> dict:
    conditions = [{"type": "Ready", "status": ready_[0], "reason": ready_[1], "message": ready_[2]}]
    if reconciling:
        conditions.append({"type": "Reconciling", "status": "True", "reason": reconciling[0],
                           "message": reconciling[1]})
    return {"metadata": {"generation": 1}, "spec": {},
            "status": {"lastAttemptedRevision": revision(attempted), "lastHandledReconcileAt": handled,
                       "conditions": conditions}}


def test_health_check_canceled_at_our_revision_is_pending():
    ks = _ks(("False", "HealthCheckCanceled", "New reconciliation triggered by Kustomization/flux-system/apps"),
             reconciling=("ProgressingWithRetry", f"Running health checks for revision {revision(SHA)}"))
    verdict = flux.kustomization_verdict(ks, "t1", SHA)
    assert (verdict.state, verdict.reason) == ("pending", "HealthCheckCanceled")
    assert "runs the health check again" in verdict.message


def test_artifact_failed_is_a_failure_only_once_our_request_is_handled():
    failing = ("False", "ArtifactFailed", "kustomization path not found: stat /tmp/x/apps: no such file or directory")
    assert flux.kustomization_verdict(_ks(failing, attempted=OLD, handled="t0"), "t1", SHA).state == "pending"
    verdict = flux.kustomization_verdict(_ks(failing, attempted=OLD, handled="t1"), "t1", SHA)
    assert (verdict.state, verdict.reason) == ("failed", "ArtifactFailed")
    assert verdict.message.startswith("kustomization path not found")


@pytest.mark.parametrize("reason", ["HealthCheckFailed", "ReconciliationFailed", "BuildFailed"])
def test_failures_at_our_revision_still_fail_fast(reason):
    verdict = flux.kustomization_verdict(_ks(("False", reason, "boom")), "t1", SHA)
    assert (verdict.state, verdict.reason) == ("failed", reason)
