"""The frontend on Kubernetes, the backend's compose file, the CI identity, the sealed-secrets controller."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.clusters.conftest import HOMELAB, REPO_ROOT, built, by_kind, venv_tool

COMPOSE = HOMELAB / "backend-vm/docker-compose.yml"


# ------------------------------------------------------------------ frontend

def _frontend():
    objects = built(HOMELAB / "apps/frontend")
    return by_kind(objects, "Deployment")[("default", "frontend")], by_kind(objects, "Service")[("default", "frontend")]


def test_frontend_deployment_fails_fast_and_probes_health(homelab_config):
    deployment, _ = _frontend()
    (ref,) = homelab_config.service("frontend").workloads
    assert ref.kind == "Deployment"
    assert (deployment["metadata"]["namespace"], deployment["metadata"]["name"]) == (ref.namespace, ref.name)
    spec = deployment["spec"]
    assert spec["progressDeadlineSeconds"] <= 120
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "harbor-pull"}]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["LISTEN"] == {"name": "LISTEN", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
    assert env["PORT"] == {"name": "PORT", "value": "8080"}
    assert container["ports"] == [{"name": "http", "containerPort": 8080}]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])


def test_frontend_image_line_carries_the_whole_reference_marker():
    lines = (HOMELAB / "apps/frontend/deployment.yaml").read_text().splitlines()
    (line,) = [ln for ln in lines if ln.strip().startswith("image:")]
    assert line.endswith(' # {"$imagepolicy": "flux-system:frontend"}')
    assert "harbor.lan/homelab/frontend:main-" in line


def test_frontend_service_is_the_node_port_health_url_probes(homelab_config):
    _, service = _frontend()
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080}]
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "frontend"}
    (check,) = [h for h in homelab_config.service("frontend").health if h.kind == "http"]
    assert ":30080/" in check.url


# ------------------------------------------------------------------ backend on the VM

def _compose(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    # config needs no engine: point DOCKER_HOST nowhere so nothing is ever contacted
    full = {k: v for k, v in os.environ.items() if k not in ("BACKEND_PORT", "DOCKER_HOST")}
    full.update({"DOCKER_HOST": f"unix://{cwd}/no-engine.sock", **(env or {})})
    return subprocess.run([venv_tool("docker-compose"), *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)


def test_compose_file_validates():
    proc = _compose("-f", str(COMPOSE), "config", "-q", cwd=COMPOSE.parent)
    assert proc.returncode == 0, proc.stderr


def _rendered(checkout: Path, env: dict | None = None) -> dict:
    proc = _compose("-f", str(checkout / "clusters/homelab/backend-vm/docker-compose.yml"),
                    "config", "--format", "json", cwd=checkout, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["services"]["backend"]


@pytest.fixture
def checkout(tmp_path) -> Path:
    """The VM's checkout, reduced to what compose reads."""
    shutil.copytree(HOMELAB / "backend-vm", tmp_path / "clusters/homelab/backend-vm")
    return tmp_path


def test_compose_service_as_sync_runs_it(checkout, homelab_config):
    backend = _rendered(checkout)
    assert backend["network_mode"] == "host"
    assert backend["restart"] == "unless-stopped"
    assert backend["environment"] == {"LISTEN": "127.0.0.1", "PORT": "8081"}
    assert backend["image"].startswith(homelab_config.image_repository("backend") + ":main-")
    assert backend["healthcheck"]["test"][-1] == "http://127.0.0.1:8081/healthz"
    # the sandbox's free port reaches both the listener and the healthcheck
    moved = _rendered(checkout, {"BACKEND_PORT": "18123"})
    assert moved["environment"]["PORT"] == "18123"
    assert moved["healthcheck"]["test"][-1] == "http://127.0.0.1:18123/healthz"
    assert homelab_config.target_of("backend").compose_file == "clusters/homelab/backend-vm/docker-compose.yml"


def test_compose_reads_the_env_file_sync_writes(checkout, homelab_config):
    """targets.vm.env_file (relative to the checkout) is the file the service's env_file names."""
    env_file = checkout / homelab_config.target_of("backend").env_file
    env_file.parent.mkdir(parents=True)
    env_file.write_text("API_TOKEN='from-the-sealed-secret'\n")
    os.chmod(env_file, 0o600)
    backend = _rendered(checkout)
    assert backend["environment"]["API_TOKEN"] == "from-the-sealed-secret"
    assert backend["environment"]["LISTEN"] == "127.0.0.1"
    # absent (a machine that never ran sync): still valid, just without the secrets
    env_file.unlink()
    assert "API_TOKEN" not in _rendered(checkout)["environment"]


def test_compose_marker_names_the_backend_policy():
    lines = COMPOSE.read_text().splitlines()
    (line,) = [ln for ln in lines if ln.strip().startswith("image:")]
    assert line.endswith(' # {"$imagepolicy": "flux-system:backend"}')


# ------------------------------------------------------------------ CI identity (RBAC)

def _allowed(rules: list[dict], group: str, resource: str, verb: str, name: str | None) -> bool:
    for rule in rules:
        if group not in rule.get("apiGroups", []) or resource not in rule.get("resources", []):
            continue
        if verb not in rule.get("verbs", []):
            continue
        names = rule.get("resourceNames")
        if names and (name is None or name not in names):
            continue
        return True
    return False


def _ci_can(objects, namespace: str, group: str, resource: str, verb: str, name: str | None = None) -> bool:
    roles = by_kind(objects, "Role")
    for (ns, _), binding in by_kind(objects, "RoleBinding").items():
        subjects = binding["subjects"]
        if ns != namespace or {"kind": "ServiceAccount", "name": "gitopsctl-ci",
                               "namespace": "flux-system"} not in subjects:
            continue
        role = roles[(ns, binding["roleRef"]["name"])]
        if _allowed(role["rules"], group, resource, verb, name):
            return True
    return False


def test_ci_identity_can_do_what_gitopsctl_does_and_nothing_more(homelab_config):
    objects = built(HOMELAB / "infrastructure/controllers")
    kube = homelab_config.target_of("frontend")
    assert [k.name for k in kube.kustomizations] == ["routing", "apps"]
    (dep,) = homelab_config.service("frontend").workloads
    repo = kube.git_repository
    needed = [  # every API call gitopsctl/targets/kubeapi.py makes
        (repo.namespace, "source.toolkit.fluxcd.io", "gitrepositories", "get", repo.name),
        (repo.namespace, "source.toolkit.fluxcd.io", "gitrepositories", "patch", repo.name),
        *[(ks.namespace, "kustomize.toolkit.fluxcd.io", "kustomizations", verb, ks.name)
          for ks in kube.kustomizations for verb in ("get", "patch")],
        (dep.namespace, "apps", "deployments", "get", dep.name),
        (dep.namespace, "apps", "replicasets", "list", None),
        (dep.namespace, "", "pods", "list", None),
        (dep.namespace, "", "pods", "watch", None),
        (dep.namespace, "", "pods/log", "get", "frontend-abc"),
    ]
    for namespace, group, resource, verb, name in needed:
        assert _ci_can(objects, namespace, group, resource, verb, name), (resource, verb, name)
    forbidden = [
        ("flux-system", "kustomize.toolkit.fluxcd.io", "kustomizations", "patch", "infrastructure"),
        ("flux-system", "kustomize.toolkit.fluxcd.io", "kustomizations", "patch", "flux-system"),
        ("flux-system", "kustomize.toolkit.fluxcd.io", "kustomizations", "create", None),
        ("flux-system", "image.toolkit.fluxcd.io", "imageupdateautomations", "patch", "homelab"),
        ("flux-system", "", "secrets", "get", "flux-system"),
        ("default", "", "secrets", "list", None),
        ("default", "apps", "deployments", "patch", "frontend"),
        ("default", "apps", "deployments", "delete", "frontend"),
        ("default", "", "pods", "delete", "frontend-abc"),
        ("default", "", "pods/exec", "create", "frontend-abc"),
    ]
    for namespace, group, resource, verb, name in forbidden:
        assert not _ci_can(objects, namespace, group, resource, verb, name), (resource, verb, name)
    for role in by_kind(objects, "Role").values():
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
    assert not by_kind(objects, "ClusterRole") and not by_kind(objects, "ClusterRoleBinding")


# ------------------------------------------------------------------ sealed-secrets controller

def test_sealed_secrets_controller_is_where_kubeseal_looks():
    objects = built(HOMELAB / "infrastructure/controllers")
    release = by_kind(objects, "HelmRelease", "helm.toolkit.fluxcd.io/v2")[("flux-system", "sealed-secrets")]
    spec = release["spec"]
    # kubeseal's defaults: --controller-namespace kube-system --controller-name sealed-secrets-controller
    assert spec["targetNamespace"] == "kube-system"
    assert spec["releaseName"] == spec["values"]["fullnameOverride"] == "sealed-secrets-controller"
    source = spec["chart"]["spec"]["sourceRef"]
    repository = by_kind(objects, "HelmRepository", "source.toolkit.fluxcd.io/v1")[("flux-system", source["name"])]
    assert source["kind"] == "HelmRepository"
    assert repository["spec"]["url"] == "https://bitnami-labs.github.io/sealed-secrets"
    assert spec["install"]["crds"] == "Create" and spec["upgrade"]["crds"] == "CreateReplace"
