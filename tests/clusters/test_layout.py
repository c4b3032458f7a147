"""The Flux layout of clusters/homelab: it checks clean, builds offline, and fits the deploy budget."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from tests.clusters.conftest import (HOMELAB, REPO_ROOT, built, flux_applied_objects,
                                     flux_kustomizations, kustomization_dirs, kustomize_build)

GATE = "--feature-gates=CancelHealthCheckOnNewRevision=true"


def _seconds(duration: str) -> float:
    """A Go duration as Flux writes them (1m30s, 2m, 45s)."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def test_gitopsctl_check_passes_on_clusters():
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITOPSCTL_")}
    proc = subprocess.run([sys.executable, "-m", "gitopsctl", "--no-color", "check", "clusters/"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 error(s), 0 warning(s)" in proc.stdout
    # every kustomization directory was built by the check itself, too
    assert f"{len(kustomization_dirs())} kustomization(s)" in proc.stdout


@pytest.mark.parametrize("directory", kustomization_dirs(),
                         ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_kustomization_builds_offline(directory):
    proc = kustomize_build(directory)
    assert proc.returncode == 0, proc.stderr
    assert built(directory), f"{directory} renders no objects"


def test_every_flux_kustomization_points_at_a_directory_that_builds():
    kustomizations = flux_kustomizations()
    assert set(kustomizations) == {("flux-system", n) for n in
                                   ("flux-system", "apps", "routing", "infrastructure",
                                    "infrastructure-secrets")}
    for (_, name), ks in kustomizations.items():
        spec = ks["spec"]
        assert spec["sourceRef"] == {"kind": "GitRepository", "name": "flux-system"}, name
        assert spec["prune"] is True, name
        directory = (REPO_ROOT / spec["path"]).resolve()
        assert directory.is_dir() and (directory / "kustomization.yaml").is_file(), name
        assert built(directory)


def test_layers_wait_within_the_five_minute_budget(homelab_config):
    budget = homelab_config.timeouts.failure
    assert budget == 300
    for (_, name), ks in flux_kustomizations().items():
        if name in ("flux-system", "routing"):
            # the root applies Flux objects only; routing's objects have no health to wait
            # for (tests/clusters/test_routing.py); each other layer waits for its own
            continue
        spec = ks["spec"]
        assert spec["wait"] is True, name
        assert _seconds(spec["timeout"]) < budget, name
    apps = flux_kustomizations()[("flux-system", "apps")]["spec"]
    deployment = next(o for o in built(HOMELAB / "apps/frontend") if o["kind"] == "Deployment")
    deadline = deployment["spec"]["progressDeadlineSeconds"]
    # The Deployment fails itself first, Flux's wait ends next, and both leave
    # gitopsctl time to push and apply the revert inside its own deadline.
    assert deadline < _seconds(apps["timeout"]) <= budget / 2
    assert apps["path"] == "./clusters/homelab/apps/frontend"
    assert [k.name for k in homelab_config.target_of("frontend").kustomizations] == ["routing", "apps"]
    # the frontend is never held back by the infrastructure layers, only by its route
    assert apps["dependsOn"] == [{"name": "routing"}]
    secrets = flux_kustomizations()[("flux-system", "infrastructure-secrets")]["spec"]
    assert secrets["dependsOn"] == [{"name": "infrastructure"}]


def test_git_repository_is_the_one_gitopsctl_reconciles(homelab_config):
    repos = [o for o in built(HOMELAB) if o["kind"] == "GitRepository"]
    assert len(repos) == 1
    ref = homelab_config.target_of("frontend").git_repository
    assert (repos[0]["metadata"]["namespace"], repos[0]["metadata"]["name"]) == (ref.namespace, ref.name)
    assert repos[0]["spec"]["ref"] == {"branch": homelab_config.git.branch}


def test_backend_vm_is_never_applied_to_the_cluster():
    applied = flux_applied_objects()
    assert not [o for o in applied if o["metadata"]["name"] == "backend-secrets"]
    assert not [o for o in applied if o["metadata"].get("namespace") == "backend"]
    for directory in kustomization_dirs():
        text = (directory / "kustomization.yaml").read_text()
        assert "backend-vm" not in re.sub(r"#.*", "", text), directory
    for ks in flux_kustomizations().values():
        assert "backend-vm" not in ks["spec"]["path"]


def test_feature_gate_patch_builds_offline_and_is_inert_without_controllers():
    objects = built(HOMELAB / "flux-system")
    assert {o["kind"] for o in objects} == {"GitRepository", "Kustomization"}
    # the placeholder bootstrap fills in holds no objects
    text = (HOMELAB / "flux-system/gotk-components.yaml").read_text()
    assert all(line.startswith("#") or not line.strip() for line in text.splitlines())


def test_feature_gate_reaches_kustomize_controller_once_bootstrap_adds_it(tmp_path):
    """What `flux bootstrap` commits into gotk-components.yaml, reduced to the two shapes
    that matter: the controller the patch is for, and one it must leave alone."""
    shutil.copytree(HOMELAB / "flux-system", tmp_path / "flux-system")
    controller = textwrap.dedent("""\
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: {name}
          namespace: flux-system
        spec:
          selector:
            matchLabels: {{app: {name}}}
          template:
            metadata:
              labels: {{app: {name}}}
            spec:
              containers:
                - name: manager
                  image: ghcr.io/fluxcd/{name}:v1.7.0
                  args:
                    - --events-addr=http://notification-controller.flux-system.svc.cluster.local./
                    - --watch-all-namespaces=true
        """)
    (tmp_path / "flux-system/gotk-components.yaml").write_text(
        controller.format(name="source-controller") + "---\n" + controller.format(name="kustomize-controller"))
    proc = kustomize_build(tmp_path / "flux-system")
    assert proc.returncode == 0, proc.stderr
    from ruamel.yaml import YAML

    deployments = {d["metadata"]["name"]: d for d in YAML(typ="safe").load_all(proc.stdout)
                   if d and d["kind"] == "Deployment"}
    args = {name: d["spec"]["template"]["spec"]["containers"][0]["args"] for name, d in deployments.items()}
    assert args["kustomize-controller"][-1] == GATE
    assert args["kustomize-controller"].count(GATE) == 1
    assert GATE not in args["source-controller"]
