"""Homelab repositories as a new user brings them to `gitopsctl init`, and a CLI runner."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def gitopsctl(*args: str, cwd: Path, stdin=subprocess.DEVNULL, timeout: float = 120
              ) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITOPSCTL_")}
    env.pop("NO_COLOR", None)
    return subprocess.run([sys.executable, "-m", "gitopsctl", *args], cwd=cwd, env=env,
                          stdin=stdin, capture_output=True, text=True, timeout=timeout)


def git_repo(root: Path, files: dict[str, str]) -> Path:
    """A real git repository holding `files`, committed."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    _commit(root)
    return root


def _commit(root: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t.lan", *args], cwd=root,
                       check=True, capture_output=True, timeout=30)

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-q", "-m", "homelab")


def this_repository(root: Path) -> Path:
    """This project's own homelab: clusters/ and examples/, as the sandbox deploys them."""
    root.mkdir(parents=True)
    for part in ("clusters", "examples"):
        shutil.copytree(REPO_ROOT / part, root / part)
    _commit(root)
    return root


def _policy(name: str, image: str, pattern: str = r"^main-[a-f0-9]+-(?P<ts>[0-9]+)$") -> str:
    return f"""\
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageRepository
metadata:
  name: {name}
  namespace: flux-system
spec:
  image: {image}
  interval: 5m
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImagePolicy
metadata:
  name: {name}
  namespace: flux-system
spec:
  imageRepositoryRef:
    name: {name}
  filterTags:
    pattern: '{pattern}'
    extract: '$ts'
  policy:
    numerical:
      order: asc
"""


def _flux_kustomization(name: str, path: str, depends: str | None = None) -> str:
    depends_on = f"  dependsOn:\n    - name: {depends}\n" if depends else ""
    return f"""\
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: {name}
  namespace: flux-system
spec:
{depends_on}  interval: 10m
  path: {path}
  prune: true
  sourceRef:
    kind: GitRepository
    name: flux-system
"""


def _deployment(kind: str, name: str, image_line: str) -> str:
    service = f"  serviceName: {name}\n" if kind == "StatefulSet" else ""
    return f"""\
apiVersion: apps/v1
kind: {kind}
metadata:
  name: {name}
spec:
{service}  replicas: 1
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
        - name: {name}
          {image_line}
"""


TAG = "main-1a2b3c4-1764160000"


def flux2_layout(root: Path) -> Path:
    """`flux bootstrap` in clusters/production, apps/ built by a second Kustomization.

    podinfo's marker is on its Deployment; db's is a `:tag` marker in the overlay's
    kustomize `images:`, so its StatefulSet is found by the image name.
    """
    files = {
        **_bootstrap("production", branch="trunk"),
        "clusters/production/infrastructure.yaml":
            _flux_kustomization("infrastructure", "./infrastructure"),
        "clusters/production/apps.yaml":
            _flux_kustomization("apps", "./apps/production", depends="infrastructure"),
        "clusters/production/images.yaml":
            _policy("podinfo", "registry.lan/fleet/podinfo") + "---\n"
            + _policy("db", "registry.lan/fleet/db"),
        "infrastructure/namespace.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n",
        "apps/base/podinfo/deployment.yaml": _deployment(
            "Deployment", "podinfo",
            f'image: registry.lan/fleet/podinfo:{TAG} # {{"$imagepolicy": "flux-system:podinfo"}}'),
        "apps/base/podinfo/kustomization.yaml":
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            "resources:\n  - deployment.yaml\n",
        "apps/base/db/statefulset.yaml": _deployment(
            "StatefulSet", "db", f"image: registry.lan/fleet/db:{TAG}"),
        "apps/base/db/kustomization.yaml":
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            "resources:\n  - statefulset.yaml\n",
        "apps/production/kustomization.yaml": f"""\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: apps
resources:
  - ../base/podinfo
  - ../base/db
images:
  - name: registry.lan/fleet/db
    newTag: {TAG} # {{"$imagepolicy": "flux-system:db:tag"}}
""",
        "src/podinfo/Dockerfile": "FROM scratch\n",
    }
    return git_repo(root, files)


def compose_layout(root: Path) -> Path:
    """A VM-only homelab: one compose file, two marked services and an unmarked database."""
    files = {
        "flux/images.yaml": _policy("api", "registry.lan/home/api") + "---\n"
                            + _policy("worker", "registry.lan/home/worker"),
        "stack/compose.yaml": f"""\
name: home
services:
  api:
    image: registry.lan/home/api:{TAG} # {{"$imagepolicy": "flux-system:api"}}
    healthcheck:
      test: ["CMD", "true"]
      interval: 5s
  worker:
    image: registry.lan/home/worker:{TAG} # {{"$imagepolicy": "flux-system:worker"}}
  db:
    image: postgres:16.4
    healthcheck:
      test: ["CMD", "pg_isready"]
""",
    }
    return git_repo(root, files)


def unmarked_layout(root: Path) -> Path:
    """Manifests and a compose file, but not one setter marker."""
    return git_repo(root, {
        "apps/web/deployment.yaml": _deployment("Deployment", "web", "image: nginx:1.27"),
        "vm/docker-compose.yml": "services:\n  web:\n    image: nginx:1.27\n",
    })


def _bootstrap(cluster: str, branch: str = "main") -> dict[str, str]:
    """What `flux bootstrap --path=clusters/<cluster>` commits, kept to the objects init reads."""
    base = f"clusters/{cluster}/flux-system"
    return {
        f"{base}/gotk-components.yaml":
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: flux-system\n",
        f"{base}/gotk-sync.yaml": """\
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: flux-system
  namespace: flux-system
spec:
  interval: 1m
  ref:
    branch: {branch}
  url: ssh://git@git.lan/homelab/fleet.git
---
""".format(branch=branch) + _flux_kustomization("flux-system", f"./clusters/{cluster}"),
        f"{base}/kustomization.yaml":
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            "resources:\n  - gotk-components.yaml\n  - gotk-sync.yaml\n",
    }


def two_clusters_layout(root: Path) -> Path:
    """staging and production bootstrapped from one repository, each with its own overlay
    and its own ImagePolicy of the same name: two targets, a service on each."""
    files: dict[str, str] = {}
    for cluster in ("staging", "production"):
        files.update(_bootstrap(cluster))
        files[f"clusters/{cluster}/apps.yaml"] = _flux_kustomization("apps", f"./apps/{cluster}")
        files[f"clusters/{cluster}/images.yaml"] = _policy("web", "registry.lan/fleet/web")
        files[f"apps/{cluster}/kustomization.yaml"] = f"""\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: web-{cluster}
resources:
  - ../base
images:
  - name: registry.lan/fleet/web
    newTag: {TAG} # {{"$imagepolicy": "flux-system:web:tag"}}
"""
    files["apps/base/kustomization.yaml"] = ("apiVersion: kustomize.config.k8s.io/v1beta1\n"
                                             "kind: Kustomization\nresources:\n  - web.yaml\n")
    files["apps/base/web.yaml"] = _deployment("DaemonSet", "web", f"image: registry.lan/fleet/web:{TAG}")
    return git_repo(root, files)


def kustomize_only_layout(root: Path) -> Path:
    """Marked manifests but no Flux object that applies them (Flux set up elsewhere)."""
    return git_repo(root, {
        "flux/images.yaml": _policy("web", "registry.lan/home/web"),
        "k8s/web/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\n"
                                      "kind: Kustomization\nresources:\n  - web.yaml\n",
        "k8s/web/web.yaml": _deployment(
            "Deployment", "web",
            f'image: registry.lan/home/web:{TAG} # {{"$imagepolicy": "flux-system:web"}}'),
    })
