"""A throw-away homelab repository (examples + gitopsctl.yaml) on a real git remote."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest

from gitopsctl.commands import Context
from gitopsctl.sandbox.lab.gitremote import GitRemote

REPO_ROOT = Path(__file__).resolve().parents[2]

CONFIG = """\
version: 1
registry:
  url: {registry}
  project: {project}
  insecure: true
services:
  frontend:
    image: frontend
    context: examples/frontend
    target: kubernetes
    policy: flux-system:frontend
    paths: [clusters/homelab/apps/frontend]
  backend:
    image: backend
    context: examples/backend
    target: vm
    policy: flux-system:backend
    paths: [clusters/homelab/backend-vm]
targets:
  kubernetes:
    git_repository: {{name: flux-system}}
    kustomization: {{name: apps}}
    deployment: {{name: frontend, namespace: default}}
    health_url: http://127.0.0.1:9/healthz
  vm:
    host: 127.0.0.2
    user: deploy
    compose_file: clusters/homelab/backend-vm/docker-compose.yml
    health_url: http://127.0.0.1:9/healthz
"""


@dataclass
class Homelab:
    remote: GitRemote
    registry_url: str
    project: str

    @property
    def root(self) -> Path:
        return self.remote.work

    def context(self, **environ: str) -> Context:
        import os

        env = {**os.environ, **environ}
        return Context(repo=self.root, config_path=self.root / "gitopsctl.yaml", environ=env)

    def commit(self, files: dict[str, str], message: str = "change") -> str:
        self.remote.write(files)
        return self.remote.commit_all(message)


def make_homelab(make_git_remote, registry_url: str) -> Homelab:
    project = f"t{secrets.token_hex(4)}"
    remote = make_git_remote(
        {"examples/frontend": REPO_ROOT / "examples/frontend",
         "examples/backend": REPO_ROOT / "examples/backend"},
        files={"gitopsctl.yaml": CONFIG.format(registry=registry_url, project=project),
               ".gitignore": ".gitopsctl/\n"})
    return Homelab(remote=remote, registry_url=registry_url, project=project)


@pytest.fixture
def homelab(make_git_remote, registry_env, base_image) -> Homelab:
    """Examples on a git remote, configured for the session registry; credentials exported."""
    return make_homelab(make_git_remote, registry_env.url)
