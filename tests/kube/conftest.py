"""The Kubernetes side for tests: the API emulator and cluster simulator, a real git
remote holding the Flux manifests, and the example frontend image in the real registry.

Session-scoped: the frontend image (built from examples/frontend once, pushed, and
untagged locally so the simulated kubelet really pulls it from the registry). Per
test: a fresh emulator (own API port, TLS CA, token, pod IP block, containers), a
fresh git remote and a free NodePort for the health URL.
"""

from __future__ import annotations

import json
import secrets
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from gitopsctl.config import HealthCheck, KubernetesTarget, ObjectRef, Workload
from gitopsctl.sandbox.lab.kube import FluxOptions, KubeEmulator
from gitopsctl.sandbox.lab.kube.store import KUSTOMIZATIONS
from gitopsctl.sandbox.lab.ports import free_port
from gitopsctl.health import probe_http
from gitopsctl.targets.kubernetes import KubeTarget

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_PATH = "clusters/test/apps/frontend"
NAMESPACE = "web"


@pytest.fixture(scope="session")
def frontend_build(docker_client, base_image, registry) -> tuple[str, str]:
    """examples/frontend built once and pushed; (repository:tag, manifest digest)."""
    repository = f"{registry.url}/homelab/frontend-kube-{secrets.token_hex(3)}"
    ref = f"{repository}:v1"
    docker_client.images.build(path=str(REPO_ROOT / "examples" / "frontend"), tag=ref, rm=True,
                               buildargs={"BASE_IMAGE": base_image, "SOURCE_SHA": "v1"})
    auth = {"username": registry.username, "password": registry.password}
    events = list(docker_client.api.push(repository, tag="v1", stream=True, decode=True, auth_config=auth))
    errors = [e["error"] for e in events if "error" in e]
    assert not errors, errors
    digest = next(e["aux"]["Digest"] for e in events if "Digest" in (e.get("aux") or {}))
    docker_client.images.remove(ref)  # the kubelet must pull it from the registry
    return ref, digest


@pytest.fixture(scope="session")
def frontend_image(frontend_build) -> str:
    return frontend_build[0]


@pytest.fixture
def kube(tmp_path, docker_client, registry):
    auth = {registry.url: {"username": registry.username, "password": registry.password}}
    emulator = KubeEmulator(tmp_path / "kube", docker_client=docker_client, registry_auth=auth,
                            restart_backoff=0.5, max_backoff=2.0,
                            # Flux never lets a health check time out under 30 s; these tests
                            # judge short timeouts, so the floor is lowered for them alone.
                            flux=FluxOptions(health_check_timeout_floor=1.0))
    with emulator:
        yield emulator
        errors = emulator.simulator.errors if emulator.simulator else []
    assert not errors, f"simulator errors: {errors}"


def deployment_yaml(image: str, *, port: int, mode: str = "none", replicas: int = 1,
                    memory: str | None = None, release: str = "1", command: list[str] | None = None,
                    liveness_path: str | None = None) -> str:
    # Indented for the template below before it is dedented.
    resources = ("\n                  resources:\n                    limits:\n"
                 f"                      memory: {memory}") if memory else ""
    command_yaml = f"\n                  command: {json.dumps(command)}" if command else ""
    liveness = ("\n                  livenessProbe:\n                    httpGet:\n"
                f"                      path: {liveness_path}\n                      port: http\n"
                "                    periodSeconds: 1\n                    failureThreshold: 2"
                ) if liveness_path else ""
    return textwrap.dedent(f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: frontend
          labels:
            app: frontend
        spec:
          replicas: {replicas}
          selector:
            matchLabels:
              app: frontend
          template:
            metadata:
              labels:
                app: frontend
            spec:
              containers:
                - name: frontend
                  image: {image}{command_yaml}
                  ports:
                    - name: http
                      containerPort: {port}
                  env:
                    - name: PORT
                      value: "{port}"
                    - name: FAIL_MODE
                      value: {mode}
                    - name: RELEASE
                      value: "{release}"
                    - name: LISTEN
                      valueFrom:
                        fieldRef:
                          fieldPath: status.podIP
                  readinessProbe:
                    httpGet:
                      path: /healthz
                      port: http
                    periodSeconds: 1
                    failureThreshold: 1{liveness}{resources}
        """)


def service_yaml(port: int, node_port: int) -> str:
    return textwrap.dedent(f"""\
        apiVersion: v1
        kind: Service
        metadata:
          name: frontend
        spec:
          type: NodePort
          selector:
            app: frontend
          ports:
            - port: 80
              targetPort: http
              nodePort: {node_port}
        """)


KUSTOMIZATION_YAML = textwrap.dedent("""\
    apiVersion: kustomize.config.k8s.io/v1beta1
    kind: Kustomization
    resources:
      - deployment.yaml
      - service.yaml
    """)


@dataclass
class Cluster:
    kube: KubeEmulator
    remote: object  # GitRemote
    image: str
    port: int
    node_port: int
    releases: int = 1
    app_path: str = APP_PATH

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.node_port}/healthz"

    def push(self, *, mode: str = "none", image: str | None = None, files: dict | None = None,
             message: str = "deploy", command: list[str] | None = None, memory: str | None = None,
             liveness_path: str | None = None) -> str:
        """Commit a new frontend Deployment (and optional extra files) and push; the commit SHA."""
        self.releases += 1
        content = {f"{APP_PATH}/deployment.yaml": deployment_yaml(image or self.image, port=self.port, mode=mode,
                                                                  release=str(self.releases), command=command,
                                                                  memory=memory, liveness_path=liveness_path)}
        content.update(files or {})
        self.remote.write(content)
        sha = self.remote.commit_all(message)
        self.remote.push()
        return sha

    def target(self, **kwargs) -> KubeTarget:
        settings = KubernetesTarget(
            kind="kubernetes", git_repository=ObjectRef("flux-system"), kustomizations=(ObjectRef("apps"),),
            kubeconfig=str(self.kube.kubeconfig))
        kwargs.setdefault("healthy_samples", 2)
        kwargs.setdefault("http_timeout", 2.0)
        kwargs.setdefault("workloads", (Workload("Deployment", "frontend", NAMESPACE),))
        kwargs.setdefault("health", (HealthCheck(http=self.health_url),))
        return KubeTarget(settings, environ={}, **kwargs)

    def deploy(self, target: KubeTarget, sha: str, timeout: float = 60.0):
        """apply + wait_healthy with one deadline, as stage does; the HealthReport."""
        deadline = time.monotonic() + timeout
        target.apply(sha, deadline)
        return target.wait_healthy(sha, deadline)


@pytest.fixture
def cluster(kube, make_git_remote, frontend_image) -> Cluster:
    port, node_port = free_port(), free_port()
    files = {f"{APP_PATH}/kustomization.yaml": KUSTOMIZATION_YAML,
             f"{APP_PATH}/deployment.yaml": deployment_yaml(frontend_image, port=port),
             f"{APP_PATH}/service.yaml": service_yaml(port, node_port)}
    remote = make_git_remote(files=files)
    kube.add_git_repository("flux-system", url=remote.url, branch="main")
    kube.add_kustomization("apps", path=f"./{APP_PATH}", wait=True, timeout="30s",
                           target_namespace=NAMESPACE)
    cluster = Cluster(kube, remote, frontend_image, port, node_port)
    # Every test starts from a live, healthy first release, as a real deploy does.
    deadline = time.monotonic() + 30
    while not probe_http(cluster.health_url, timeout=1).ok:
        assert time.monotonic() < deadline, f"first release never became healthy: {kube.simulator.errors}"
        time.sleep(0.1)
    # ... and Flux done with it: a request made while its health check still runs waits behind
    # it (up to one 5 s poll), which would eat a short test deadline.
    while not _ready(kube.store.get(KUSTOMIZATIONS, "flux-system", "apps")):
        assert time.monotonic() < deadline, "the first release's Kustomization never became Ready"
        time.sleep(0.1)
    return cluster


def _ready(kustomization: dict) -> bool:
    conditions = kustomization.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
