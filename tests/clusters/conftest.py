"""clusters/homelab as Flux and the VM would see it: built with the venv's kubectl, read once."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTERS = REPO_ROOT / "clusters"
HOMELAB = CLUSTERS / "homelab"
VENV_BIN = Path(sys.executable).parent


def venv_tool(name: str) -> str:
    """The tool the [test] extra installed next to this Python; never one from PATH."""
    path = VENV_BIN / name
    assert path.is_file(), f"{path} is missing: pip install -e '.[test]' into this venv"
    return str(path)


def kustomize_build(directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run([venv_tool("kubectl"), "kustomize", str(directory)], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)


@functools.lru_cache(maxsize=None)
def built(directory: Path) -> tuple[dict, ...]:
    """The objects `kubectl kustomize DIR` renders (cached: the tree does not change in a run)."""
    from ruamel.yaml import YAML

    proc = kustomize_build(directory)
    assert proc.returncode == 0, f"kubectl kustomize {directory} failed:\n{proc.stderr}"
    return tuple(d for d in YAML(typ="safe").load_all(proc.stdout) if d)


def kustomization_dirs() -> list[Path]:
    return sorted(p.parent for p in CLUSTERS.rglob("kustomization.yaml"))


def by_kind(objects, kind: str, api_prefix: str = "") -> dict[tuple[str, str], dict]:
    return {((o["metadata"].get("namespace") or ""), o["metadata"]["name"]): o for o in objects
            if o.get("kind") == kind and str(o.get("apiVersion", "")).startswith(api_prefix)}


def flux_kustomizations() -> dict[tuple[str, str], dict]:
    """Every Flux Kustomization the root applies (flux-system's own and the layers)."""
    return by_kind(built(HOMELAB), "Kustomization", "kustomize.toolkit.fluxcd.io/")


def flux_applied_objects() -> list[dict]:
    """Everything Flux applies to the cluster: the root and each Flux Kustomization's path."""
    objects = list(built(HOMELAB))
    for ks in flux_kustomizations().values():
        path = ks["spec"]["path"]
        if path.rstrip("/") in ("./clusters/homelab", "clusters/homelab"):
            continue
        objects += built((REPO_ROOT / path).resolve())
    return objects


@pytest.fixture(scope="session")
def homelab_config():
    from gitopsctl import config

    return config.load(REPO_ROOT / "gitopsctl.yaml", root=REPO_ROOT, environ={})
