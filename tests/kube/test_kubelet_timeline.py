"""The simulated kubelet's and Deployment controller's timelines, read over HTTPS as a client sees them.

Back-offs are the sandbox's (kube fixture: 0.5 s for the kubelet's 10 s, capped at 2 s for
its 5 min); the order of states and the counters are the kubelet's.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from dataclasses import dataclass, field

import pytest

from gitopsctl.sandbox.lab.kube import KubeEmulator
from gitopsctl.sandbox.lab.kube.kubelet import Backoff, go_duration
from gitopsctl.targets.kubeapi import KubeApi, RetryPolicy
from gitopsctl.targets.rollout import PULL_FAILURE_GRACE, pod_problem, rollout_status

FAST = RetryPolicy(attempts=3, first_delay=0.05, read_timeout=5)
CRASH = ["/bin/sh", "-c", "echo boom; exit 1"]


def _deployment(name: str, image: str, *, command=None, env=None, readiness_port=None, deadline=None) -> dict:
    container: dict = {"name": "app", "image": image}
    if command:
        container["command"] = command
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    if readiness_port:
        container["readinessProbe"] = {"httpGet": {"path": "/healthz", "port": readiness_port}, "periodSeconds": 1}
    spec: dict = {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                  "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}}}
    if deadline is not None:
        spec["progressDeadlineSeconds"] = deadline
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
            "spec": spec}


def _clients(kube: KubeEmulator):
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=str(kube.kubeconfig))
    return client.AppsV1Api(api_client), KubeApi(kube.kubeconfig, policy=FAST)


@dataclass
class Timeline:
    """Every distinct container state of the pods matching `selector`, as the watch delivered them."""

    api: KubeApi
    selector: str
    seen: list[tuple[float, dict]] = field(default_factory=list)  # (monotonic, pod)
    _halt: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        rv = "0"
        while not self._halt.is_set():
            try:
                stream = self.api.watch_pods("default", self.selector, rv, 5)
                for event in stream:
                    obj = event.get("object") or {}
                    rv = obj["metadata"].get("resourceVersion", rv)
                    self.seen.append((time.monotonic(), obj))
                    if self._halt.is_set():
                        stream.close()
                        return
            except Exception:  # noqa: BLE001 - a dropped stream is re-opened from the last version
                time.sleep(0.05)

    def stop(self) -> None:
        self._halt.set()
        self._thread.join(timeout=10)

    def states(self) -> list[tuple[float, tuple]]:
        """(when, (kind, reason, restartCount, lastState exit code, message)) of the first container, deduplicated."""
        out: list[tuple[float, tuple]] = []
        for at, pod in self.seen:
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            if not statuses:
                continue
            cs = statuses[0]
            kind, detail = next(iter((cs.get("state") or {"none": {}}).items()))
            last = ((cs.get("lastState") or {}).get("terminated") or {}).get("exitCode")
            key = (kind, (detail or {}).get("reason", ""), cs.get("restartCount", 0), last,
                   (detail or {}).get("message", ""))
            if not out or out[-1][1] != key:
                out.append((at, key))
        return out

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.states()):
            assert time.monotonic() < deadline, f"never saw {what}: {[s for _, s in self.states()]}"
            time.sleep(0.05)


def test_backoff_doubles_caps_and_forgets_after_twice_the_cap_like_client_go():
    b = Backoff(10, 300)
    assert not b.in_backoff_since(0, 0)  # no entry: the first exit restarts at once
    b.next(0, 0)
    assert b.delay == 10 and b.in_backoff_since(5, 10) and not b.in_backoff_since(5, 15)
    for expected in (20, 40, 80, 160, 300, 300):
        b.next(b.last_update + 1, b.last_update + 1)
        assert b.delay == expected
    # An exit more than 2 x 300 s after the last restart: stable, the back-off starts over.
    restarted = b.last_update
    assert not b.in_backoff_since(restarted + 601, restarted + 601.5)
    b.next(restarted + 601, restarted + 601.5)
    assert b.delay == 10
    assert [go_duration(s) for s in (0.5, 10, 160, 300)] == ["500ms", "10s", "2m40s", "5m0s"]


def test_crash_loop_states_and_counters_follow_the_kubelet(kube, frontend_image):
    apps, api = _clients(kube)
    timeline = Timeline(api, "app=crasher")
    try:
        apps.create_namespaced_deployment("default", _deployment("crasher", frontend_image, command=CRASH))
        timeline.wait_for(lambda s: any(k[0] == "running" and k[2] == 4 for _, k in s), 40, "restart 4")
    finally:
        timeline.stop()
    states = [k for _, k in timeline.states() if k[0] != "waiting" or k[1] != "ContainerCreating"]
    shape = [(k[0], k[1], k[2], k[3]) for k in states]
    # First exit: shown terminated, restarted at once (no CrashLoopBackOff), restartCount 1 at that restart.
    assert shape[:3] == [("running", "", 0, None), ("terminated", "Error", 0, None), ("running", "", 1, 1)], shape
    # From the second exit on: terminated, then CrashLoopBackOff with the exit as lastState, then the restart.
    for restarts in (1, 2, 3):
        i = shape.index(("terminated", "Error", restarts, 1))
        assert shape[i + 1:i + 3] == [("waiting", "CrashLoopBackOff", restarts, 1), ("running", "", restarts + 1, 1)]
    pod = timeline.seen[-1][1]
    name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
    messages = [k[4] for k in states if k[1] == "CrashLoopBackOff"]
    assert messages == [f"back-off {d} restarting failed container=app pod={name}_default({uid})"
                        for d in ("500ms", "1s", "2s")]
    # The waits themselves: 0.5 s, 1 s, then the 2 s cap, each from the exit.
    at = {k: t for t, k in reversed(timeline.states())}
    first_exit = next(t for t, k in timeline.states() if k[0] == "terminated")
    first_restart = next(t for t, k in timeline.states() if k[0] == "running" and k[2] == 1)
    assert first_restart - first_exit < 0.45
    for restarts, wait in ((1, 0.5), (2, 1.0), (3, 2.0)):
        exited = next(t for k, t in at.items() if k[:3] == ("terminated", "Error", restarts))
        restarted = next(t for k, t in at.items() if k[:3] == ("running", "", restarts + 1))
        assert wait * 0.9 <= restarted - exited < wait + 1.0, (restarts, restarted - exited)


def test_a_container_that_runs_past_twice_the_cap_is_restarted_at_once(tmp_path, docker_client, registry,
                                                                        frontend_image):
    auth = {registry.url: {"username": registry.username, "password": registry.password}}
    # Cap 0.4 s: a run of over 0.8 s after a restart makes the kubelet forget the back-off.
    with KubeEmulator(tmp_path / "kube", docker_client=docker_client, registry_auth=auth,
                      restart_backoff=0.2, max_backoff=0.4) as kube:
        apps, api = _clients(kube)
        timeline = Timeline(api, "app=slow")
        try:
            apps.create_namespaced_deployment("default", _deployment(
                "slow", frontend_image, command=["/bin/sh", "-c", "sleep 1.5; exit 2"]))
            timeline.wait_for(lambda s: any(k[0] == "running" and k[2] == 3 for _, k in s), 40, "restart 3")
        finally:
            timeline.stop()
        assert kube.simulator.errors == []
    reasons = [k[1] for _, k in timeline.states()]
    assert "CrashLoopBackOff" not in reasons, timeline.states()
    assert reasons.count("Error") >= 3


def test_failed_pull_backs_off_retries_and_starts_once_the_image_is_pushed(kube, docker_client, registry,
                                                                           frontend_image):
    apps, api = _clients(kube)
    auth = {"username": registry.username, "password": registry.password}
    late = f"{registry.url}/homelab/late-{secrets.token_hex(3)}"
    timeline = Timeline(api, "app=late")
    try:
        apps.create_namespaced_deployment("default", _deployment("late", f"{late}:v1"))

        def pulls_failed(states, n=2):
            return sum(1 for _, k in states if k[1] == "ErrImagePull") >= n

        timeline.wait_for(pulls_failed, 30, "two failed pulls")
        assert pod_problem(timeline.seen[-1][1]) is None, "a young pull failure is not a verdict yet"
        docker_client.images.pull(frontend_image, auth_config=auth)
        docker_client.images.get(frontend_image).tag(late, "v1")
        for event in docker_client.api.push(late, tag="v1", stream=True, decode=True, auth_config=auth):
            assert "error" not in event, event
        docker_client.images.remove(f"{late}:v1")
        timeline.wait_for(lambda s: any(k[0] == "running" for _, k in s), 30, "the container running")
    finally:
        timeline.stop()
    states = [k for _, k in timeline.states()]
    reasons = [k[1] for k in states if k[0] == "waiting"]
    first = reasons.index("ErrImagePull")
    assert reasons[first + 1] == "ImagePullBackOff", reasons
    backoff = next(k for k in states if k[1] == "ImagePullBackOff")
    assert backoff[4].startswith(f'Back-off pulling image "{late}:v1": ErrImagePull: '), backoff
    assert next(k for k in states if k[1] == "ErrImagePull")[4].startswith("failed to pull and unpack image")
    running = next(k for k in states if k[0] == "running")
    assert running[2] == 0  # pull retries are not restarts


def test_progress_deadline_exceeded_then_cleared_by_a_rollout_that_progresses(kube, frontend_image):
    apps, api = _clients(kube)
    port = 20000 + secrets.randbelow(20000)
    never_ready = _deployment("stuck", frontend_image, readiness_port=port, deadline=2,
                              env={"PORT": str(port), "FAIL_MODE": "unhealthy", "LISTEN": "0.0.0.0"})
    apps.create_namespaced_deployment("default", never_ready)
    created = time.monotonic()

    def progressing() -> dict:
        dep = api.get_deployment("default", "stuck")
        return next((c for c in dep["status"].get("conditions") or [] if c["type"] == "Progressing"), {})

    deadline = time.monotonic() + 30
    while progressing().get("reason") != "ProgressDeadlineExceeded":
        assert time.monotonic() < deadline, progressing()
        time.sleep(0.05)
    waited = time.monotonic() - created
    cond = progressing()
    assert cond["status"] == "False" and re.fullmatch(r'ReplicaSet "stuck-\w+" has timed out progressing\.',
                                                      cond["message"]), cond
    assert 2.0 <= waited < 4.5, waited  # spec.progressDeadlineSeconds 2, unscaled, from the last progress
    assert rollout_status(api.get_deployment("default", "stuck")).failed
    # A new template: a new ReplicaSet restarts the clock, and its progress clears the condition.
    good = _deployment("stuck", frontend_image, readiness_port=port, deadline=2,
                       env={"PORT": str(port), "FAIL_MODE": "none", "LISTEN": "0.0.0.0"})
    apps.patch_namespaced_deployment("stuck", "default", {"spec": {"template": good["spec"]["template"]}})
    while progressing().get("reason") != "NewReplicaSetAvailable":
        assert time.monotonic() < deadline + 30, progressing()
        time.sleep(0.05)
    assert progressing()["status"] == "True"
    assert rollout_status(api.get_deployment("default", "stuck")).complete


def _pod(state, *, restarts=0, last=None, start="2026-01-01T00:00:00Z"):
    cs = {"name": "app", "state": state, "restartCount": restarts, "lastState": last or {}}
    return {"metadata": {"name": "p"}, "status": {"startTime": start, "containerStatuses": [cs]}}


T0 = 1767225600.0  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff"])
def test_pull_failures_count_only_past_the_grace(reason):
    pod = _pod({"waiting": {"reason": reason, "message": "manifest unknown"}})
    assert pod_problem(pod, T0 + 5) is None
    assert pod_problem(pod, T0 + PULL_FAILURE_GRACE) is None
    late = pod_problem(pod, T0 + PULL_FAILURE_GRACE + 1)
    assert late is not None and late.reason == reason
    assert pod_problem(pod, T0 + 5, pull_grace=2).reason == reason


def test_a_non_zero_exit_and_a_restart_is_a_crash_loop_before_the_kubelet_says_so():
    last = {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2026-01-01T00:00:10Z"}}
    restarted = _pod({"running": {"startedAt": "2026-01-01T00:00:10Z"}}, restarts=1, last=last)
    early = pod_problem(restarted, T0 + 11, early_crash=True)
    assert (early.reason, early.restarts, early.exit_code) == ("CrashLoopBackOff", 1, 1)
    assert "last exit code 1" in early.evidence()
    # Not before the restart, not for a clean exit, not for a crash the kubelet itself has forgotten.
    assert pod_problem(_pod({"terminated": last["terminated"]}), T0 + 11, early_crash=True) is None
    clean = {"terminated": {**last["terminated"], "exitCode": 0, "reason": "Completed"}}
    assert pod_problem(_pod({"running": {}}, restarts=1, last=clean), T0 + 11, early_crash=True) is None
    assert pod_problem(_pod({"running": {}}, restarts=1, last=last), T0 + 10 + 601, early_crash=True) is None
    # Outside a deploy's watch (verify, status) a pod running again after one crash is healthy.
    assert pod_problem(restarted, T0 + 11) is None
