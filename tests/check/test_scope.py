"""What `gitopsctl check` reviews comes from gitopsctl.yaml, never from a directory name.

Every test drives the CLI on a real git repository laid out as a homelab that never heard of
clusters/: Flux's objects in deploy/flux, a Kubernetes service in deploy/k8s/web, two VM
services (one without any HTTP endpoint) in one compose file in deploy/vm, and a scratch
file in notes/ that nothing deploys.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gitopsctl.sandbox.lab.gitremote import git
from tests.fixtures.configs import kube_target, service, v2_text, vm_target

VENV_BIN = Path(sys.executable).parent

FLUX_SYNC = """\
    apiVersion: source.toolkit.fluxcd.io/v1
    kind: GitRepository
    metadata: {name: flux-system, namespace: flux-system}
    spec:
      interval: 1m
      ref: {branch: main}
      url: ssh://git@gitea.lan/homelab/homelab.git
    ---
    apiVersion: kustomize.toolkit.fluxcd.io/v1
    kind: Kustomization
    metadata: {name: flux-system, namespace: flux-system}
    spec:
      interval: 10m
      path: ./deploy/flux
      prune: true
      sourceRef: {kind: GitRepository, name: flux-system}
    ---
    apiVersion: kustomize.toolkit.fluxcd.io/v1
    kind: Kustomization
    metadata: {name: apps, namespace: flux-system}
    spec:
      interval: 10m
      path: ./deploy/k8s
      prune: true
      sourceRef: {kind: GitRepository, name: flux-system}
    """


def image_policy(name: str) -> str:
    return textwrap.dedent(f"""\
    ---
    apiVersion: image.toolkit.fluxcd.io/v1
    kind: ImageRepository
    metadata: {{name: {name}, namespace: flux-system}}
    spec: {{image: harbor.lan/homelab/{name}, interval: 5m}}
    ---
    apiVersion: image.toolkit.fluxcd.io/v1
    kind: ImagePolicy
    metadata: {{name: {name}, namespace: flux-system}}
    spec:
      imageRepositoryRef: {{name: {name}}}
      policy:
        numerical: {{order: asc}}
    """)


WEB_DEPLOYMENT = """\
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web, namespace: default}
    spec:
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec:
          containers:
            - name: web
              image: harbor.lan/homelab/web:v1 # {"$imagepolicy": "flux-system:web"}
    """

COMPOSE = """\
    services:
      api:
        image: harbor.lan/homelab/api:v1 # {"$imagepolicy": "flux-system:api"}
        healthcheck: {test: ["CMD", "true"], interval: 5s}
      worker:
        image: harbor.lan/homelab/worker:v1 # {"$imagepolicy": "flux-system:worker"}
        healthcheck: {test: ["CMD", "true"], interval: 5s}
    """

# Nothing deploys it: with a config it is out of scope, and it would fail every rule.
SCRATCH = """\
    apiVersion: v1
    kind: Pod
    metadata: {name: scratch}
    spec:
      containers: [{name: p, image: "busybox:latest"}]
    """


def config_text(*, worker_compose: str = "worker") -> str:
    services = {
        "web": service("web", "cluster", paths=["deploy/k8s/web"],
                       workloads=[{"kind": "Deployment", "name": "web", "namespace": "default"}]),
        "api": service("api", "vm", paths=["deploy/vm"], compose_services=["api"],
                       health=[{"http": "http://127.0.0.2:8080/healthz"}]),
        "worker": service("worker", "vm", paths=["deploy/vm"], compose_services=[worker_compose],
                          health=[{"compose": worker_compose}]),
    }
    targets = {"cluster": kube_target(), "vm": vm_target(compose_file="deploy/vm/docker-compose.yml")}
    return v2_text(services, targets, stage={"order": ["web", ["api", "worker"]]})


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def homelab(tmp_path) -> Path:
    root = tmp_path / "homelab"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    write(root, "deploy/flux/sync.yaml", FLUX_SYNC)
    write(root, "deploy/flux/images.yaml", "".join(image_policy(n) for n in ("web", "api", "worker")))
    write(root, "deploy/k8s/web/kustomization.yaml", """\
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        resources: [deployment.yaml]
        """)
    write(root, "deploy/k8s/web/deployment.yaml", WEB_DEPLOYMENT)
    write(root, "deploy/vm/docker-compose.yml", COMPOSE)
    write(root, "notes/scratch.yaml", SCRATCH)
    (root / "gitopsctl.yaml").write_text(config_text())
    commit(root, "homelab")
    return root


def commit(root: Path, message: str) -> None:
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-q", "-m", message)


def check(root: Path, *paths: str) -> tuple[int, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITOPSCTL_")}
    proc = subprocess.run([sys.executable, "-m", "gitopsctl", "--no-color", "--output", "json",
                           "check", *paths], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.stdout.strip(), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def located(doc: dict) -> set[tuple[str, str, int | None]]:
    return {(f["rule"], f["file"], f["line"]) for f in doc["findings"]}


def config_line(root: Path, text: str) -> int:
    return (root / "gitopsctl.yaml").read_text().splitlines().index(text) + 1


def test_markers_outside_clusters_pass_with_a_v2_config(homelab):
    code, doc = check(homelab)
    assert (code, doc["findings"]) == (0, []), doc["findings"]
    # the Flux tree, the app, the compose file; not notes/scratch.yaml (busybox:latest)
    assert doc["files"] == 5 and doc["kustomizations"] == 1 and doc["compose_files"] == 1
    assert "gitopsctl.yaml" not in doc["scope"] and "services' paths" in doc["scope"]


def test_a_deleted_marker_is_goc007_naming_the_service_and_where_it_looked(homelab):
    deployment = homelab / "deploy/k8s/web/deployment.yaml"
    deployment.write_text(deployment.read_text().replace(' # {"$imagepolicy": "flux-system:web"}', ""))
    compose = homelab / "deploy/vm/docker-compose.yml"
    compose.write_text(compose.read_text().replace(' # {"$imagepolicy": "flux-system:worker"}', ""))
    code, doc = check(homelab)
    assert code == 1
    missing = {f["message"]: f for f in doc["findings"] if f["rule"] == "GOC007"}
    assert set(missing) == {
        "service 'web' has no setter marker for flux-system:web; looked in deploy/k8s/web",
        "service 'worker' has no setter marker for flux-system:worker; looked in deploy/vm"}
    at = {f["message"].split("'")[1]: (f["file"], f["line"]) for f in missing.values()}
    assert at == {"web": ("gitopsctl.yaml", config_line(homelab, "  web:")),
                  "worker": ("gitopsctl.yaml", config_line(homelab, "  worker:"))}
    web = missing["service 'web' has no setter marker for flux-system:web; looked in deploy/k8s/web"]
    assert web["hint"] == ('mark its image: image: REF # {"$imagepolicy": "flux-system:web"}, '
                           "or fix services.web.paths")


def test_a_vm_service_finds_its_marker_in_its_targets_compose_file(homelab):
    cfg = homelab / "gitopsctl.yaml"
    cfg.write_text(cfg.read_text().replace("  - deploy/vm\n", "  - deploy/api\n", 1))
    (homelab / "deploy/api").mkdir()
    code, doc = check(homelab)
    assert (code, doc["findings"]) == (0, [])  # api's marker is in deploy/vm/docker-compose.yml
    compose = homelab / "deploy/vm/docker-compose.yml"
    compose.write_text(compose.read_text().replace(' # {"$imagepolicy": "flux-system:api"}', ""))
    code, doc = check(homelab)
    assert [f["message"] for f in doc["findings"] if f["rule"] == "GOC007"] == [
        "service 'api' has no setter marker for flux-system:api; looked in deploy/api, "
        "deploy/vm/docker-compose.yml (the compose file of target 'vm')"]


def test_files_given_outside_the_scope_are_skipped_and_inside_are_checked(homelab):
    code, doc = check(homelab, "notes/scratch.yaml")
    assert (code, doc["files"], doc["findings"]) == (0, 0, [])
    write(homelab, "deploy/k8s/web/pod.yaml", SCRATCH)
    code, doc = check(homelab, "notes/scratch.yaml", "deploy/k8s/web/pod.yaml")
    assert code == 1 and doc["files"] == 1
    assert located(doc) == {("GOC005", "deploy/k8s/web/pod.yaml", 5)}


def test_pre_commit_passes_the_staged_files_and_only_those_in_scope_count(homelab):
    (homelab / ".pre-commit-config.yaml").write_text(textwrap.dedent("""\
        repos:
          - repo: local
            hooks:
              - id: gitopsctl-check
                name: gitopsctl check
                entry: gitopsctl check
                language: system
                files: '(\\.ya?ml|(^|/)Kustomization)$'
        """))
    commit(homelab, "hooks")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITOPSCTL_")}
    env.update(PRE_COMMIT_HOME=str(homelab.parent / "pre-commit-home"), NO_COLOR="1",
               PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", PIP_NO_INDEX="1")

    def pre_commit() -> subprocess.CompletedProcess:
        return subprocess.run([str(VENV_BIN / "pre-commit"), "run"], cwd=homelab, env=env,
                              capture_output=True, text=True, timeout=300)

    write(homelab, "notes/more.yaml", SCRATCH)
    git(homelab, "add", "notes/more.yaml")
    result = pre_commit()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Passed" in result.stdout
    write(homelab, "deploy/k8s/web/secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\n"
                                                 "stringData: {password: hunter2}\n")
    git(homelab, "add", "deploy/k8s/web/secret.yaml")
    result = pre_commit()
    assert result.returncode != 0
    assert "deploy/k8s/web/secret.yaml:2:7: GOC003 error" in result.stdout
    assert "notes/more.yaml" not in result.stdout and "hunter2" not in result.stdout


def test_without_a_config_every_yaml_file_git_sees_is_checked(homelab):
    git(homelab, "rm", "-q", "gitopsctl.yaml")
    (homelab / ".gitignore").write_text("build/\n")
    write(homelab, "build/out.yaml", SCRATCH)          # ignored: never checked
    write(homelab, "drafts/new.yaml", SCRATCH)         # untracked, not ignored: checked
    code, doc = check(homelab)
    assert code == 1
    assert {(r, f) for r, f, _ in located(doc)} == {
        ("GOC005", "notes/scratch.yaml"), ("GOC005", "drafts/new.yaml")}
    assert doc["files"] == 7 and "git sees" in doc["scope"]


def test_two_vm_services_in_one_compose_file_and_a_compose_service_it_lacks(homelab):
    (homelab / "gitopsctl.yaml").write_text(config_text(worker_compose="wroker"))
    code, doc = check(homelab)
    assert code == 1
    text = (homelab / "gitopsctl.yaml").read_text().splitlines()
    named = [i + 1 for i, line in enumerate(text) if line.strip() in ("- wroker", "- compose: wroker")]
    found = [f for f in doc["findings"] if f["rule"] == "GOC017"]
    assert [(f["file"], f["line"]) for f in found] == [("gitopsctl.yaml", n) for n in named]
    assert found[0]["message"] == ("service 'worker' names compose service 'wroker', which "
                                   "deploy/vm/docker-compose.yml does not define")
    assert "services there: api, worker" in found[0]["hint"]


def test_a_marker_no_service_bumps_is_a_warning_with_a_hint(homelab):
    write(homelab, "deploy/flux/images.yaml",
          (homelab / "deploy/flux/images.yaml").read_text() + image_policy("tool"))
    write(homelab, "deploy/k8s/web/tool.yaml", """\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: tool, namespace: default}
        data:
          image: harbor.lan/homelab/tool:v1 # {"$imagepolicy": "flux-system:tool"}
          again: harbor.lan/homelab/web:v1 # {"$imagepolicy": "flux-system:web"}
        """)
    write(homelab, "deploy/flux/web-copy.yaml", """\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: web-copy, namespace: default}
        data:
          image: harbor.lan/homelab/web:v1 # {"$imagepolicy": "flux-system:web"}
        """)
    code, doc = check(homelab)
    assert code == 0
    found = {(f["file"], f["line"]): f for f in doc["findings"]}
    assert set(found) == {("deploy/k8s/web/tool.yaml", 5), ("deploy/flux/web-copy.yaml", 5)}
    assert all(f["rule"] == "GOC016" and f["severity"] == "warning" for f in found.values())
    assert "no service in gitopsctl.yaml names" in found[("deploy/k8s/web/tool.yaml", 5)]["message"]
    assert "add deploy/flux to services.web.paths" in found[("deploy/flux/web-copy.yaml", 5)]["hint"]


def test_the_automation_a_kubernetes_target_of_any_name_suspends_is_a_warning(homelab):
    write(homelab, "deploy/flux/automation.yaml", """\
        apiVersion: image.toolkit.fluxcd.io/v1
        kind: ImageUpdateAutomation
        metadata: {name: images, namespace: flux-system}
        spec:
          interval: 30m
          sourceRef: {kind: GitRepository, name: flux-system}
          git:
            commit:
              author: {name: fluxcdbot, email: flux@homelab.lan}
          update: {path: ./deploy/k8s, strategy: Setters}
        """)
    code, doc = check(homelab)
    assert code == 1
    assert [(f["rule"], f["file"], f["severity"]) for f in doc["findings"]] == [
        ("GOC010", "deploy/k8s/web/deployment.yaml", "error")]
    cfg = homelab / "gitopsctl.yaml"
    text = cfg.read_text().replace("    kind: kubernetes\n", "    kind: kubernetes\n"
                                   "    image_update_automation: {name: images}\n", 1)
    cfg.write_text(text)
    code, doc = check(homelab)
    assert code == 0
    assert [(f["rule"], f["severity"]) for f in doc["findings"]] == [("GOC010", "warning")]


def test_a_file_in_a_flux_kustomization_tree_is_in_scope(homelab):
    write(homelab, "deploy/flux/secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\n"
                                              "stringData: {password: hunter2}\n")
    code, doc = check(homelab)
    assert code == 1 and located(doc) == {("GOC003", "deploy/flux/secret.yaml", 2)}


def test_a_file_given_alone_is_built_with_the_kustomization_that_includes_it(homelab):
    kustomization = homelab / "deploy/k8s/web/kustomization.yaml"
    kustomization.write_text(kustomization.read_text().replace("[deployment.yaml]",
                                                               "[deployment.yaml, service.yaml]"))
    code, doc = check(homelab, "deploy/k8s/web/deployment.yaml")
    assert code == 1 and doc["files"] == 1 and doc["kustomizations"] == 1
    assert located(doc) == {("GOC002", "deploy/k8s/web/kustomization.yaml", 1)}
    code, doc = check(homelab, "notes/scratch.yaml")
    assert (code, doc["kustomizations"]) == (0, 0)
