"""Which files a Flux Kustomization applies: kustomize-controller's rule, on real directories."""

from __future__ import annotations

from gitopsctl.init import fluxtree
from gitopsctl.init.discover import discover
from tests.init.layouts import git_repo

KUSTOMIZATION = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {}\n"


def test_without_a_kustomization_file_every_manifest_below_is_applied(tmp_path):
    repo = git_repo(tmp_path / "r", {
        "apps/a.yaml": CONFIGMAP.format("a"),
        "apps/deep/b.yml": CONFIGMAP.format("b"),
        # a directory with a kustomization file is one resource: only what it lists
        "apps/kustomized/kustomization.yaml": KUSTOMIZATION + "namespace: inner\nresources:\n  - c.yaml\n",
        "apps/kustomized/c.yaml": CONFIGMAP.format("c"),
        "apps/kustomized/unlisted.yaml": CONFIGMAP.format("unlisted"),
        "apps/notes.txt": "not a manifest\n",
        "elsewhere/d.yaml": CONFIGMAP.format("d"),
    })
    build = fluxtree.build(discover(repo), "apps")
    assert set(build.applies) == {"apps/a.yaml", "apps/deep/b.yml", "apps/kustomized/c.yaml"}
    assert build.applies["apps/kustomized/c.yaml"] == "inner"
    assert build.applies["apps/a.yaml"] is None


def test_an_outer_kustomization_namespace_wins_and_patches_are_read(tmp_path):
    repo = git_repo(tmp_path / "r", {
        "overlay/kustomization.yaml": KUSTOMIZATION + "namespace: outer\nresources:\n  - ../base\n"
                                      "  - https://example.invalid/remote.yaml\n"
                                      "patches:\n  - path: patch.yaml\n",
        "overlay/patch.yaml": CONFIGMAP.format("a"),
        "base/kustomization.yaml": KUSTOMIZATION + "namespace: inner\nresources:\n  - a.yaml\n"
                                   "  - ../overlay\n",   # a cycle ends, it does not hang
        "base/a.yaml": CONFIGMAP.format("a"),
    })
    build = fluxtree.build(discover(repo), "overlay")
    assert build.applies == {"base/a.yaml": "outer"}
    assert {"overlay/patch.yaml", "overlay/kustomization.yaml", "base/kustomization.yaml"} <= build.reads
