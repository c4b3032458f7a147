"""The real kubectl against the emulator: discovery, tables, watch and logs, as in the sandbox."""

from __future__ import annotations

import subprocess
import threading

import pytest

from gitopsctl.executables import find_tool
from gitopsctl.sandbox.lab.kube import ApiServer, KubeEmulator, Store
from gitopsctl.sandbox.lab.kube.discovery import table
from gitopsctl.sandbox.lab.kube.store import (DEPLOYMENTS, GIT_REPOSITORIES, KUSTOMIZATIONS, PODS,
                                          REPLICASETS)


@pytest.fixture
def emulator(tmp_path):
    with KubeEmulator(tmp_path, simulate=False) as kube:
        yield kube


def kubectl(kubeconfig, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([find_tool("kubectl"), "--kubeconfig", str(kubeconfig), *args],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def rows(output: str) -> list[list[str]]:
    return [line.split() for line in output.strip().splitlines()]


def crash_looping_pod(name: str = "frontend-7d9c-x2x4q") -> dict:
    return {"metadata": {"name": name, "namespace": "default", "labels": {"app": "frontend"}},
            "spec": {"containers": [{"name": "app", "image": "frontend:bad"}]},
            "status": {"phase": "Running", "containerStatuses": [{
                "name": "app", "ready": False, "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}


def test_api_resources_lists_what_the_emulator_serves(emulator):
    run = kubectl(emulator.kubeconfig, "api-resources", "--no-headers")
    assert run.returncode == 0, run.stderr
    listed = {row[0]: row for row in rows(run.stdout)}
    # Every kind of the served table (gitopsctl.kubeapis; tests/kube/test_api_surface.py checks all).
    assert {"pods", "deployments", "replicasets", "gitrepositories", "kustomizations", "services",
            "imagepolicies"} <= set(listed)
    assert listed["kustomizations"][1:3] == ["ks", "kustomize.toolkit.fluxcd.io/v1"]
    assert listed["pods"][1:3] == ["po", "v1"]


def test_get_prints_the_columns_a_cluster_prints(emulator):
    emulator.store.create(PODS, crash_looping_pod())
    emulator.store.create(DEPLOYMENTS, {"metadata": {"name": "frontend", "namespace": "default"},
                                        "spec": {"replicas": 2},
                                        "status": {"readyReplicas": 1, "updatedReplicas": 2,
                                                   "availableReplicas": 1}})
    emulator.add_kustomization("apps", path="./apps")
    emulator.store.patch(KUSTOMIZATIONS, "flux-system", "apps", {"status": {"conditions": [
        {"type": "Ready", "status": "False", "reason": "HealthCheckFailed",
         "message": "health-check-timeout"}]}}, status_only=True)

    pods = kubectl(emulator.kubeconfig, "get", "pods", "-A")
    assert pods.returncode == 0, pods.stderr
    assert rows(pods.stdout)[0] == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert rows(pods.stdout)[1][:5] == ["default", "frontend-7d9c-x2x4q", "0/1", "CrashLoopBackOff", "4"]

    deploy = kubectl(emulator.kubeconfig, "get", "deploy", "frontend", "--no-headers")
    assert rows(deploy.stdout)[0][:4] == ["frontend", "1/2", "2", "1"]

    ks = kubectl(emulator.kubeconfig, "get", "ks", "-n", "flux-system", "--no-headers")
    assert rows(ks.stdout)[0][0] == "apps" and rows(ks.stdout)[0][2:] == ["False", "health-check-timeout"]

    everything = kubectl(emulator.kubeconfig, "get", "all", "-o", "name")
    # The `kubernetes` Service the API server keeps in default is part of "all", as on a cluster.
    assert everything.stdout.split() == ["pod/frontend-7d9c-x2x4q", "service/kubernetes", "deployment.apps/frontend"]


def test_get_by_label_and_as_yaml_use_the_plain_api(emulator):
    emulator.store.create(PODS, crash_looping_pod("a"))
    other = crash_looping_pod("b")
    other["metadata"]["labels"] = {"app": "backend"}
    emulator.store.create(PODS, other)
    run = kubectl(emulator.kubeconfig, "get", "pods", "-l", "app=frontend",
                  "-o", "jsonpath={.items[*].status.containerStatuses[0].restartCount}")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "4"


def test_get_watch_prints_each_change(emulator):
    pod = crash_looping_pod("web")
    pod["status"] = {"phase": "Pending"}
    emulator.store.create(PODS, pod)
    watch = subprocess.Popen([find_tool("kubectl"), "--kubeconfig", str(emulator.kubeconfig),
                              "get", "pods", "-w", "--no-headers"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = watch.stdout.readline().split()
        emulator.store.patch(PODS, "default", "web", {"status": {"phase": "Running", "containerStatuses": [
            {"name": "app", "ready": True, "restartCount": 0, "state": {"running": {}}}]}}, status_only=True)
        timer = threading.Timer(20, watch.kill)  # a missing line must fail the test, not hang it
        timer.start()
        second = watch.stdout.readline().split()
        timer.cancel()
    finally:
        watch.kill()
        watch.communicate()
    assert first[:3] == ["web", "0/1", "Pending"]
    assert second[:3] == ["web", "1/1", "Running"]


def test_logs_and_previous_logs(tmp_path):
    def logs(namespace, pod, container, previous):
        return "listening on :8080\npanic: boom\n" if previous else "listening on :8080\n"

    store = Store()
    store.create(PODS, crash_looping_pod("web"))
    api = ApiServer(store, token="t0ken", log_provider=logs).start()
    try:
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        assert kubectl(kubeconfig, "logs", "web").stdout == "listening on :8080\n"
        assert kubectl(kubeconfig, "logs", "pod/web", "--previous", "--tail", "1").stdout == "panic: boom\n"
    finally:
        api.stop()


def test_a_kind_the_emulator_does_not_serve_is_a_clear_error(emulator):
    run = kubectl(emulator.kubeconfig, "get", "nodes")
    assert run.returncode == 0  # served by Kubernetes 1.33, just not stored: none listed
    run = kubectl(emulator.kubeconfig, "get", "widgets")
    assert run.returncode != 0
    assert 'the server doesn\'t have a resource type "widgets"' in run.stderr


@pytest.mark.parametrize("kind", [PODS, DEPLOYMENTS, REPLICASETS, GIT_REPOSITORIES, KUSTOMIZATIONS])
def test_every_table_row_has_a_cell_per_column_even_for_bare_objects(kind):
    bare = {"metadata": {"name": "x", "namespace": "default"}}
    doc = table(kind, [bare], 7, None)
    assert doc["columnDefinitions"][0]["name"] == "Name"
    assert len(doc["rows"][0]["cells"]) == len(doc["columnDefinitions"])
    assert doc["rows"][0]["object"]["metadata"]["name"] == "x"
    assert table(kind, [bare], 7, None, with_columns=False)["columnDefinitions"] == []


def test_age_follows_kubectl_steps():
    from datetime import datetime, timedelta, timezone

    from gitopsctl.sandbox.lab.kube.discovery import _age

    now = datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)

    def age(seconds: int) -> str:
        created = (now - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return _age({"metadata": {"creationTimestamp": created}}, now)

    assert [age(s) for s in (5, 119, 150, 300, 601, 7200, 3 * 3600 + 60, 10 * 3600, 3 * 86400)] == \
        ["5s", "119s", "2m30s", "5m", "10m", "120m", "3h1m", "10h", "3d"]
    assert _age({"metadata": {}}, now) == "<unknown>"
