"""diff on a real bare remote with real kubectl and docker compose: the marker edits a
stage would push, the Kustomization rendered before and after, the compose config before
and after, and nothing changed anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from gitopsctl.deploy.diffing import diff
from gitopsctl.deploy.stage import stage
from gitopsctl.deploy.suspension import suspend
from gitopsctl.errors import EXIT_FINDINGS, EXIT_OK, ConfigError

from .conftest import REGISTRY, FakeTargets, remote_tip

SERVICES = {"web": "north", "api": "box"}
KINDS = {"north": "kubernetes", "box": "vm"}

FLUX_KUSTOMIZATION = textwrap.dedent("""\
    apiVersion: kustomize.toolkit.fluxcd.io/v1
    kind: Kustomization
    metadata:
      name: north
      namespace: flux-system
    spec:
      interval: 10m
      path: ./deploy/web
      prune: true
      sourceRef:
        kind: GitRepository
        name: flux-system
    """)
KUSTOMIZATION = textwrap.dedent("""\
    apiVersion: kustomize.config.k8s.io/v1beta1
    kind: Kustomization
    namespace: shop
    commonLabels:
      app.kubernetes.io/part-of: homelab
    resources:
      - deployment.yaml
    """)


@pytest.fixture
def lab(lab_factory):
    """web on a Kubernetes target whose Flux Kustomization builds deploy/web; api on a VM."""
    lab = lab_factory(SERVICES, KINDS, [["web"], ["api"]])
    lab.remote.write({"flux/north/kustomization.yaml": FLUX_KUSTOMIZATION,
                      "deploy/web/kustomization.yaml": KUSTOMIZATION})
    lab.remote.commit_all("flux: north builds deploy/web")
    lab.remote.push()
    return lab


def status_of_work_tree(lab) -> str:
    return subprocess.run(["git", "-C", str(lab.work), "status", "--porcelain"], check=True,
                          capture_output=True, text=True).stdout


def test_diff_shows_the_edits_and_both_renders_and_changes_nothing(lab):
    source = lab.app_commit("v2")
    tip = remote_tip(lab)

    result = diff(lab.context(), source=source, allow_unbuilt=True)

    new = f"{REGISTRY}/web:{source[:7]}"
    assert [f["path"] for f in result.files] == ["deploy/box/compose.yaml",
                                                  "deploy/web/deployment.yaml"]
    web = result.files[1]["diff"]
    assert f"-          image: {REGISTRY}/web:old" in web and f"+          image: {new}" in web
    assert web.startswith("--- a/deploy/web/deployment.yaml\n+++ b/deploy/web/deployment.yaml\n")
    [manifests] = result.manifests
    assert (manifests.target, manifests.name, manifests.path) == ("north", "flux-system/north",
                                                                  "deploy/web")
    assert manifests.error is None
    # kustomize's own output: the namespace and labels it adds are in both renders
    assert "namespace: shop" in manifests.before and "app.kubernetes.io/part-of: homelab" in manifests.after
    assert f"{REGISTRY}/web:old" in manifests.before and new in manifests.after
    assert new not in manifests.before and f"{REGISTRY}/web:old" not in manifests.after
    assert f"+      - image: {new}" in manifests.unified()
    [compose] = result.compose
    assert compose.error is None and compose.target == "box"
    assert f"image: {REGISTRY}/api:old" in compose.before
    assert f"image: {REGISTRY}/api:{source[:7]}" in compose.after
    assert result.changed and result.exit_code == EXIT_OK
    assert remote_tip(lab) == tip and status_of_work_tree(lab) == ""  # nothing changed

    doc = result.to_dict()
    assert doc["changed"] and doc["manifests"][0]["before"] == manifests.before
    assert doc["compose"][0]["diff"].count("+") >= 2

    flagged = diff(lab.context(), source=source, allow_unbuilt=True, exit_code=True)
    assert flagged.exit_code == EXIT_FINDINGS == 1


def test_diff_of_one_service_and_of_a_source_already_live(lab):
    source = lab.app_commit("v2")

    only_api = diff(lab.context(), source=source, service="api", allow_unbuilt=True)
    assert [f["path"] for f in only_api.files] == ["deploy/box/compose.yaml"]
    assert only_api.manifests == [] and len(only_api.compose) == 1
    with pytest.raises(ConfigError) as unknown:
        diff(lab.context(), source=source, service="nope", allow_unbuilt=True)
    assert unknown.value.exit_code == 2

    assert stage(lab.context(), FakeTargets(lab), source=source, delay=0,
                 allow_unbuilt=True).exit_code == EXIT_OK
    live = diff(lab.context(), source=source, allow_unbuilt=True, exit_code=True)
    assert not live.changed and live.files == [] and live.manifests == [] and live.compose == []
    assert live.exit_code == EXIT_OK


def test_diff_says_a_stage_would_stop_and_reports_a_render_the_edits_break(lab):
    lab.remote.write({"deploy/web/kustomization.yaml": KUSTOMIZATION + "  - missing.yaml\n"})
    lab.remote.commit_all("a resource nobody wrote")
    lab.remote.push()
    source = lab.app_commit("v2")
    suspend(lab.context(), reason="freeze")

    result = diff(lab.context(), source=source, allow_unbuilt=True)

    assert any("a stage would stop now" in n and "freeze" in n for n in result.notes)
    [manifests] = result.manifests
    assert manifests.error.startswith("render before failed") and "missing.yaml" in manifests.error
    assert result.changed  # the marker edits are still shown


# ---------------------------------------------------------------- through the CLI

def test_the_cli_prints_the_diff_and_exits_1_with_exit_code_when_something_would_change(lab):
    source = lab.app_commit("v2")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITOPSCTL_")}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "gitopsctl", "--no-color", *args],
                              cwd=lab.work, env=env, capture_output=True, text=True, timeout=120)

    text = run("diff", "--source", source, "--allow-unbuilt")
    assert text.returncode == 0, text.stderr
    assert f"+          image: {REGISTRY}/web:{source[:7]}" in text.stdout
    assert "# kustomize build of north flux-system/north (deploy/web)" in text.stdout
    assert "# compose config of box project homelab (deploy/box/compose.yaml)" in text.stdout

    flagged = run("-o", "json", "diff", "--source", source, "--allow-unbuilt", "--exit-code")
    assert flagged.returncode == 1, flagged.stderr
    doc = json.loads(flagged.stdout)
    assert doc["changed"] and not doc["ok"] and len(doc["files"]) == 2
