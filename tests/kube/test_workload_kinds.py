"""StatefulSets and DaemonSets on the emulator, judged by the real kubectl and kubernetes client.

`kubectl rollout status` (staging/src/k8s.io/kubectl/pkg/polymorphichelpers/rollout_status.go)
is the reference for "rollout complete"; the order pods come and go in follows the controllers
(pkg/controller/statefulset, pkg/controller/daemon). Pods run as real containers through the
simulated kubelet, so readiness is the frontend image's own readiness probe.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from gitopsctl.executables import find_tool
from gitopsctl.sandbox.lab.kube.store import CONTROLLER_REVISIONS, PODS, STATEFULSETS
from gitopsctl.sandbox.lab.ports import free_port

from tests.fixtures.manifests import workload

NS = "default"


def workload_yaml(kind: str, name: str, image: str, **options) -> str:
    """tests/fixtures/manifests.workload as JSON, which kubectl reads as YAML."""
    return json.dumps(workload(kind, name, image, **options), indent=1)


# kubectl 1.3x's informers ask for a watch list (sendInitialEvents) and wait for the bookmark
# that ends its initial events, which the emulator does not send; the client-go feature gate
# (read from the environment, k8s.io/client-go/features envvar.go) makes them list, then watch.
KUBECTL_ENV = {**os.environ, "KUBE_FEATURE_WatchListClient": "false"}


def kubectl(kube, *args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([find_tool("kubectl"), "--kubeconfig", str(kube.kubeconfig), *args],
                          input=stdin, capture_output=True, text=True, timeout=timeout, env=KUBECTL_ENV)


def apply(kube, manifest: str) -> None:
    run = kubectl(kube, "apply", "-f", "-", stdin=manifest)
    assert run.returncode == 0, run.stderr


def update(kube, manifest: str) -> None:
    """A new spec as one merge patch: the emulator treats kubectl apply's strategic merge
    patches as merge patches, which would cut a container list down to the changed fields."""
    import yaml

    doc = yaml.safe_load(manifest)
    run = kubectl(kube, "patch", f"{doc['kind'].lower()}/{doc['metadata']['name']}", "--type", "merge",
                  "-p", json.dumps({"spec": doc["spec"]}))
    assert run.returncode == 0, run.stderr


def apps_api(kube):
    from kubernetes import client, config

    return client.AppsV1Api(config.new_client_from_config(str(kube.kubeconfig)))


def pods_of(kube, app: str) -> list[dict]:
    from gitopsctl.sandbox.lab.kube.selectors import Selector

    return kube.store.list(PODS, NS, Selector.parse(f"app={app}"))[0]


def ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in pod["status"].get("conditions") or [])


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def cluster(kube):
    return kube


class Timeline:
    """When each pod was first seen, first Ready and gone, polled from the store."""

    def __init__(self, kube, app: str):
        self.kube, self.app = kube, app
        self.seen: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self.gone: dict[str, float] = {}
        self.uids: dict[str, set[str]] = {}

    def poll(self) -> None:
        now = time.monotonic()
        pods = {p["metadata"]["name"]: p for p in pods_of(self.kube, self.app)}
        for name, pod in pods.items():
            uids = self.uids.setdefault(name, set())
            if pod["metadata"]["uid"] not in uids:
                if uids:  # replaced between two looks: the old one went just now
                    self.gone.setdefault(f"{name}#{len(uids)}", now)
                uids.add(pod["metadata"]["uid"])
                self.seen[f"{name}#{len(uids)}"] = now
            if ready(pod):
                self.ready.setdefault(f"{name}#{len(uids)}", now)
        for name in self.uids:
            if name not in pods:
                self.gone.setdefault(f"{name}#{len(self.uids[name])}", now)

    def poll_until(self, done, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            self.poll()
            assert time.monotonic() < deadline, f"timed out waiting for {what}; seen {sorted(self.seen)}"
            time.sleep(0.02)


def test_ordered_ready_statefulset_starts_pods_one_by_one_and_rolls_out(cluster, frontend_image):
    port = free_port()
    apply(cluster, workload_yaml("StatefulSet", "web", frontend_image, port=port, replicas=3))
    timeline = Timeline(cluster, "web")
    timeline.poll_until(lambda: len(timeline.ready) == 3, 120, "three ready pods")
    # OrderedReady: a pod is created only once every lower ordinal is Running and Ready.
    assert timeline.seen["web-1#1"] >= timeline.ready["web-0#1"]
    assert timeline.seen["web-2#1"] >= timeline.ready["web-1#1"]

    run = kubectl(cluster, "rollout", "status", "statefulset/web", "--timeout=60s")
    assert run.returncode == 0, run.stderr
    assert "partitioned roll out complete: 3 new pods have been updated..." in run.stdout

    sts = apps_api(cluster).read_namespaced_stateful_set("web", NS)
    assert (sts.status.replicas, sts.status.ready_replicas, sts.status.available_replicas) == (3, 3, 3)
    assert sts.status.current_revision == sts.status.update_revision
    assert (sts.status.current_replicas, sts.status.updated_replicas) == (3, 3)
    assert sts.status.observed_generation == sts.metadata.generation
    assert sts.spec.pod_management_policy == "OrderedReady"  # API defaulting
    assert sts.spec.update_strategy.rolling_update.partition == 0
    for pod in pods_of(cluster, "web"):
        labels = pod["metadata"]["labels"]
        assert labels["controller-revision-hash"] == sts.status.update_revision
        assert labels["statefulset.kubernetes.io/pod-name"] == pod["metadata"]["name"]
        assert pod["spec"]["hostname"] == pod["metadata"]["name"] and pod["spec"]["subdomain"] == "web"
    revisions = cluster.store.list(CONTROLLER_REVISIONS, NS)[0]
    assert [r["metadata"]["name"] for r in revisions] == [sts.status.update_revision]


def test_rolling_update_goes_from_the_highest_ordinal_down_and_stops_at_the_partition(cluster, frontend_image):
    port = free_port()
    apply(cluster, workload_yaml("StatefulSet", "web", frontend_image, port=port, replicas=3))
    assert kubectl(cluster, "rollout", "status", "statefulset/web", "--timeout=90s").returncode == 0
    first = cluster.store.get(STATEFULSETS, NS, "web")["status"]["updateRevision"]

    update(cluster, workload_yaml("StatefulSet", "web", frontend_image, port=port, replicas=3, release="2",
                                 partition=1))
    run = kubectl(cluster, "rollout", "status", "statefulset/web", "--timeout=90s")
    assert run.returncode == 0, run.stderr
    assert "partitioned roll out complete: 2 new pods have been updated..." in run.stdout
    sts = cluster.store.get(STATEFULSETS, NS, "web")
    second = sts["status"]["updateRevision"]
    assert second != first and sts["status"]["currentRevision"] == first  # not every pod is updated
    revisions = {p["metadata"]["name"]: p["metadata"]["labels"]["controller-revision-hash"]
                 for p in pods_of(cluster, "web")}
    assert revisions == {"web-0": first, "web-1": second, "web-2": second}

    timeline = Timeline(cluster, "web")
    timeline.poll()
    update(cluster, workload_yaml("StatefulSet", "web", frontend_image, port=port, replicas=3, release="2",
                                 partition=0))
    timeline.poll_until(lambda: "web-0#2" in timeline.ready, 90, "web-0 at the new revision")
    sts = wait_for(lambda: (s := cluster.store.get(STATEFULSETS, NS, "web"))["status"]["currentRevision"] == second
                   and s, 30, "currentRevision to move")
    assert sts["status"]["currentReplicas"] == sts["status"]["updatedReplicas"] == 3
    assert set(timeline.gone) == {"web-0#1"}  # only the pod below the old partition was replaced

    # Back to the first template: its revision is reused under the next number (a rollback).
    timeline = Timeline(cluster, "web")
    timeline.poll()
    update(cluster, workload_yaml("StatefulSet", "web", frontend_image, port=port, replicas=3))
    timeline.poll_until(lambda: "web-0#2" in timeline.ready, 120, "the rollback to reach web-0")
    assert timeline.gone["web-2#1"] < timeline.gone["web-1#1"] < timeline.gone["web-0#1"]
    # One at a time: the next lower pod goes only once the replaced one is Ready again.
    assert timeline.gone["web-1#1"] >= timeline.ready["web-2#2"]
    sts = cluster.store.get(STATEFULSETS, NS, "web")
    assert sts["status"]["updateRevision"] == first
    numbers = {r["metadata"]["name"]: r["revision"] for r in cluster.store.list(CONTROLLER_REVISIONS, NS)[0]}
    assert numbers == {first: 3, second: 2}


def test_a_crash_looping_pod_blocks_ordered_ready_but_not_parallel(cluster, frontend_image):
    apply(cluster, workload_yaml("StatefulSet", "db", frontend_image, port=free_port(), replicas=2, mode="crash"))
    apply(cluster, workload_yaml("StatefulSet", "cache", frontend_image, port=free_port(), replicas=3, mode="crash",
                                 policy="Parallel"))

    def waiting_reason(pod: dict) -> str:
        statuses = pod["status"].get("containerStatuses") or [{}]
        return ((statuses[0].get("state") or {}).get("waiting") or {}).get("reason", "")

    wait_for(lambda: any(waiting_reason(p) == "CrashLoopBackOff" for p in pods_of(cluster, "db")), 60,
             "db-0 in CrashLoopBackOff")
    assert sorted(p["metadata"]["name"] for p in pods_of(cluster, "db")) == ["db-0"]
    wait_for(lambda: len(pods_of(cluster, "cache")) == 3, 30, "all cache pods at once")

    run = kubectl(cluster, "rollout", "status", "statefulset/db", "--timeout=2s")
    assert run.returncode != 0
    assert "Waiting for 2 pods to be ready..." in run.stdout
    # kubectl shows it too (between back-offs the pod shows its last exit, Error, for a moment).
    wait_for(lambda: "CrashLoopBackOff" in kubectl(cluster, "get", "pods", "-l", "app=db", "--no-headers").stdout,
             20, "kubectl get pods to show CrashLoopBackOff")


def test_daemonset_runs_one_pod_on_the_node_and_replaces_it_on_update(cluster, frontend_image):
    port = free_port()
    apply(cluster, workload_yaml("DaemonSet", "agent", frontend_image, port=port))
    run = kubectl(cluster, "rollout", "status", "daemonset/agent", "--timeout=60s")
    assert run.returncode == 0, run.stderr
    assert 'daemon set "agent" successfully rolled out' in run.stdout
    ds = apps_api(cluster).read_namespaced_daemon_set("agent", NS)
    st = ds.status
    assert (st.desired_number_scheduled, st.current_number_scheduled, st.updated_number_scheduled,
            st.number_ready, st.number_available) == (1, 1, 1, 1, 1)
    assert st.observed_generation == ds.metadata.generation
    assert ds.spec.update_strategy.rolling_update.max_unavailable == 1  # API defaulting
    [old] = pods_of(cluster, "agent")
    assert old["spec"]["nodeName"] == "emulator-node"

    update(cluster, workload_yaml("DaemonSet", "agent", frontend_image, port=port, release="2"))
    run = kubectl(cluster, "rollout", "status", "daemonset/agent", "--timeout=60s")
    assert run.returncode == 0, run.stderr
    [new] = wait_for(lambda: [p for p in pods_of(cluster, "agent") if ready(p)], 30, "the new pod")
    assert new["metadata"]["name"] != old["metadata"]["name"]
    hashes = {r["metadata"]["labels"]["controller-revision-hash"]: r["revision"]
              for r in cluster.store.list(CONTROLLER_REVISIONS, NS)[0]}
    assert hashes[new["metadata"]["labels"]["controller-revision-hash"]] == 2
    assert hashes[old["metadata"]["labels"]["controller-revision-hash"]] == 1
    listed = kubectl(cluster, "get", "daemonsets", "--no-headers")
    assert listed.stdout.split()[:6] == ["agent", "1", "1", "1", "1", "1"], listed.stdout


def test_daemonset_with_a_crashing_pod_never_completes(cluster, frontend_image):
    apply(cluster, workload_yaml("DaemonSet", "agent", frontend_image, port=free_port(), mode="crash"))
    run = kubectl(cluster, "rollout", "status", "daemonset/agent", "--timeout=3s")
    assert run.returncode != 0
    assert 'Waiting for daemon set "agent" rollout to finish: 0 of 1 updated pods are available...' in run.stdout


def test_deleting_the_owner_removes_its_pods(cluster, frontend_image):
    apply(cluster, workload_yaml("StatefulSet", "web", frontend_image, port=free_port(), replicas=1))
    apply(cluster, workload_yaml("DaemonSet", "agent", frontend_image, port=free_port()))
    wait_for(lambda: pods_of(cluster, "web") and pods_of(cluster, "agent"), 60, "both pods")
    for kind in ("statefulset/web", "daemonset/agent"):
        run = kubectl(cluster, "delete", kind, "--wait=false")
        assert run.returncode == 0, run.stderr
    wait_for(lambda: not pods_of(cluster, "web") and not pods_of(cluster, "agent"), 30, "the pods to go")
    wait_for(lambda: not cluster.store.list(CONTROLLER_REVISIONS, NS)[0], 10, "the revisions to go")
    run = kubectl(cluster, "get", "statefulsets,daemonsets,controllerrevisions", "-o", "json")
    assert json.loads(run.stdout)["items"] == []


def test_gitopsctl_judges_every_rollout_state_as_kubectl_does(cluster, frontend_image):
    """`kubectl rollout status --watch=false` and gitopsctl.targets.rollout call the same
    states complete: a finished rollout, and one stalled on a crash-looping release."""
    from gitopsctl.sandbox.lab.kube.store import DAEMONSETS
    from gitopsctl.targets.rollout import workload_rollout

    ports = {"web": free_port(), "agent": free_port()}
    kinds = (("StatefulSet", "statefulset/web", STATEFULSETS, "web"), ("DaemonSet", "daemonset/agent", DAEMONSETS,
                                                                      "agent"))

    def manifest(kind: str, name: str, mode: str) -> str:
        return workload_yaml(kind, name, frontend_image, port=ports[name], replicas=2, mode=mode)

    def sample_until(want: bool) -> None:
        """Compare on states that held still while kubectl looked, until each kind shows `want`."""
        shown: dict[str, bool] = {}
        deadline = time.monotonic() + 90
        while set(shown.values()) != {want} or len(shown) < 2:
            assert time.monotonic() < deadline, shown
            for kind, ref, store_kind, name in kinds:
                before = cluster.store.get(store_kind, NS, name)
                run = kubectl(cluster, "rollout", "status", ref, "--watch=false")
                after = cluster.store.get(store_kind, NS, name)
                if before["metadata"]["resourceVersion"] != after["metadata"]["resourceVersion"]:
                    continue  # it moved while kubectl looked: this sample compares nothing
                assert run.returncode == 0, run.stderr
                theirs = "complete" in run.stdout or "successfully rolled out" in run.stdout
                ours = workload_rollout(kind, after)
                assert ours.complete == theirs, (kind, run.stdout, ours)
                shown[kind] = theirs

    for kind, _, _, name in kinds:
        apply(cluster, manifest(kind, name, "none"))
    sample_until(True)
    for kind, _, _, name in kinds:
        update(cluster, manifest(kind, name, "crash"))
    sample_until(False)


def test_a_kube_target_follows_the_services_workloads_and_refuses_a_compose_check():
    from gitopsctl.config import HealthCheck, KubernetesTarget, ObjectRef, Workload
    from gitopsctl.errors import ConfigError
    from gitopsctl.targets.kubernetes import KubeTarget

    v2 = KubernetesTarget(kind="kubernetes", git_repository=ObjectRef("flux-system"),
                          kustomizations=(ObjectRef("infra"), ObjectRef("apps")))
    target = KubeTarget(v2, workloads=(Workload("StatefulSet", "db"),), health=(), environ={})
    assert (target.kustomizations, target.health) == ((ObjectRef("infra"), ObjectRef("apps")), ())
    with pytest.raises(ConfigError, match="a compose health check needs a VM target"):
        KubeTarget(v2, workloads=(), health=(HealthCheck(compose="worker"),), name="db", environ={})
