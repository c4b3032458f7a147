"""A Kubernetes service made of a StatefulSet and a DaemonSet, with a TCP health check.

Built from a version 2 gitopsctl.yaml (KubeTarget.from_config), deployed against the API
emulator over HTTPS with a real git remote, a real Flux GitRepository and two Kustomizations
reconciled in order (the emulator's kustomize-controller applies the StatefulSet and the
DaemonSet), pods as real containers of the example frontend image pulled from the test registry.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import textwrap
import threading
import time
from pathlib import Path

import pytest

from gitopsctl import config as configuration
from gitopsctl.executables import find_tool
from gitopsctl.sandbox.lab.kube import KubeEmulator
from gitopsctl.sandbox.lab.kube.store import KUSTOMIZATIONS
from gitopsctl.sandbox.lab.ports import free_port
from gitopsctl.targets.kubernetes import KubeTarget

from tests.fixtures.manifests import workload
from tests.fixtures.configs import kube_target, service, v2_text

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = "clusters/test/apps/db"
INFRA = "clusters/test/infra"
KUBECTL_ENV = {**os.environ, "KUBE_FEATURE_WatchListClient": "false"}  # see tests/kube/test_workload_kinds.py


@pytest.fixture(scope="module")
def image(docker_client, base_image, registry) -> str:
    repository = f"{registry.url}/homelab/db-{secrets.token_hex(3)}"
    ref = f"{repository}:v1"
    docker_client.images.build(path=str(REPO_ROOT / "examples" / "frontend"), tag=ref, rm=True,
                               buildargs={"BASE_IMAGE": base_image, "SOURCE_SHA": "v1"})
    auth = {"username": registry.username, "password": registry.password}
    events = list(docker_client.api.push(repository, tag="v1", stream=True, decode=True, auth_config=auth))
    assert not [e["error"] for e in events if "error" in e]
    docker_client.images.remove(ref)  # the kubelet must pull it
    return ref


class Homelab:
    def __init__(self, kube: KubeEmulator, remote, image: str, tmp: Path, tcp_address: str):
        self.kube, self.remote, self.image, self.tmp = kube, remote, image, tmp
        self.port, self.release = free_port(), 0
        text = v2_text(
            {"db": service("db", "cluster", workloads=[
                {"kind": "StatefulSet", "name": "db", "namespace": "default"},
                {"kind": "DaemonSet", "name": "agent", "namespace": "default"}],
                health=[{"tcp": tcp_address}])},
            {"cluster": kube_target(kubeconfig=str(kube.kubeconfig),
                                    kustomizations=[{"name": "infra"}, {"name": "apps"}])},
            timeouts={"healthy_samples": 2, "http": "2s"})
        path = tmp / "gitopsctl.yaml"
        path.write_text(text)
        self.config = configuration.load(path, root=tmp)

    def push(self, crash: str = "") -> str:
        """A new release of both workloads; `crash` names the one whose pods crash at start."""
        self.release += 1
        docs = [workload(kind, name, self.image, port=self.port, mode="crash" if crash == name else "none",
                         release=str(self.release), replicas=2)
                for kind, name in (("StatefulSet", "db"), ("DaemonSet", "agent"))]
        self.remote.write({f"{APP}/workloads.yaml": "\n---\n".join(json.dumps(d) for d in docs) + "\n"})
        sha = self.remote.commit_all(f"release {self.release}")
        self.remote.push()
        return sha

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([find_tool("kubectl"), "--kubeconfig", str(self.kube.kubeconfig), *args],
                              input=stdin, capture_output=True, text=True, timeout=60, env=KUBECTL_ENV)

    def target(self) -> KubeTarget:
        return KubeTarget.from_config(self.config, "db", environ={})

    def deploy(self, sha: str, timeout: float = 90.0):
        target = self.target()
        deadline = time.monotonic() + timeout
        target.apply(sha, deadline)
        return target.wait_healthy(sha, deadline)


@pytest.fixture
def tcp_listener():
    """A TCP service on 127.0.0.1 (the thing the tcp check probes); accepts until closed."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    halt = threading.Event()

    def serve() -> None:
        while not halt.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    halt.set()
    thread.join(timeout=2)
    server.close()


def make_homelab(tmp_path, docker_client, registry, make_git_remote, image, tcp_address):
    auth = {registry.url: {"username": registry.username, "password": registry.password}}
    kube = KubeEmulator(tmp_path / "kube", docker_client=docker_client, registry_auth=auth,
                        restart_backoff=0.5, max_backoff=2.0).start()
    infra = textwrap.dedent("""\
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        resources: [namespace.yaml]
        """)
    remote = make_git_remote(files={
        f"{INFRA}/kustomization.yaml": infra,
        f"{INFRA}/namespace.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: default\n",
        f"{APP}/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
                                     "resources: [workloads.yaml]\n",
        f"{APP}/workloads.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: placeholder\n"})
    kube.add_git_repository("flux-system", url=str(remote.bare), branch="main")
    kube.add_kustomization("infra", path=f"./{INFRA}")
    kube.add_kustomization("apps", path=f"./{APP}", depends_on=["infra"])
    return kube, Homelab(kube, remote, image, tmp_path, tcp_address)


@pytest.fixture
def homelab(tmp_path, docker_client, registry, make_git_remote, image, tcp_listener):
    kube, lab = make_homelab(tmp_path, docker_client, registry, make_git_remote, image, tcp_listener)
    try:
        yield lab
    finally:
        errors = list(kube.simulator.errors)
        kube.stop()
    assert not errors, errors


def test_statefulset_and_daemonset_service_deploys_healthy_with_a_tcp_check(homelab):
    sha = homelab.push()
    report = homelab.deploy(sha)
    assert report.healthy, report.to_dict()
    messages = [(c.name, c.message) for c in report.checks]
    assert ("rollout", "StatefulSet default/db: 2 new pods updated, 2 of 2 ready") in messages, messages
    assert ("rollout", "DaemonSet default/agent: 1 of 1 nodes run the new pod") in messages, messages
    assert report.checks[-1].name == "tcp" and "connection accepted" in report.checks[-1].message
    # Both Kustomizations were reconciled at the pushed commit, in order.
    for name in ("infra", "apps"):
        status = homelab.kube.store.get(KUSTOMIZATIONS, "flux-system", name)["status"]
        assert status["lastAppliedRevision"] == f"main@sha1:{sha}"
    # kubectl agrees that both rollouts are complete.
    for ref in ("statefulset/db", "daemonset/agent"):
        run = homelab.kubectl("rollout", "status", ref, "--timeout=10s")
        assert run.returncode == 0, run.stdout + run.stderr

    look = homelab.target().check_health()
    assert look.healthy, look.to_dict()
    watched = homelab.target().observe(time.monotonic() + 20)
    assert watched.healthy and watched.details["samples"] == 2, watched.to_dict()


def test_a_crash_looping_statefulset_pod_fails_the_deploy_fast(homelab):
    assert homelab.deploy(homelab.push()).healthy
    sha = homelab.push(crash="db")
    started = time.monotonic()
    report = homelab.deploy(sha, timeout=120)
    took = time.monotonic() - started
    assert not report.healthy
    # The rolling update replaces the highest ordinal first: db-1 at the new revision crashes.
    assert report.details["pod"] == "db-1" and report.details["pod_reason"] == "CrashLoopBackOff", report.to_dict()
    assert report.reason.startswith("db pod db-1 CrashLoopBackOff"), report.reason
    evidence = "\n".join(report.checks[-1].evidence)
    assert "FAIL_MODE=crash" in evidence, evidence
    assert took < 30, took  # judged from the pod, not from a deadline
    # db-0 still runs the previous release: the rolling update waits for db-1, which never gets ready.
    look = homelab.target().check_health()
    assert not look.healthy and look.reason == "db StatefulSet default/db: 1 of 2 pods ready", look.to_dict()
    pods = next(c for c in look.checks if c.name == "pods" and "db" in c.message)
    assert [line.split()[1] for line in pods.evidence] == ["db-1"]  # the current release's pods only


def test_a_crash_looping_daemonset_pod_fails_the_deploy_fast(homelab):
    assert homelab.deploy(homelab.push()).healthy
    started = time.monotonic()
    report = homelab.deploy(homelab.push(crash="agent"), timeout=120)
    assert not report.healthy and report.details["pod_reason"] == "CrashLoopBackOff", report.to_dict()
    assert report.details["pod"].startswith("agent-"), report.details
    assert time.monotonic() - started < 30


def test_a_tcp_check_that_never_connects_fails_the_wait(tmp_path, docker_client, registry, make_git_remote, image):
    closed = f"127.0.0.1:{free_port()}"  # nothing listens there
    kube, lab = make_homelab(tmp_path, docker_client, registry, make_git_remote, image, closed)
    try:
        report = lab.deploy(lab.push(), timeout=40)
    finally:
        kube.stop()
    assert not report.healthy
    assert report.reason.startswith(f"db health check timed out (tcp {closed}: no connection"), report.reason
    assert report.failed_check.name == "tcp"
