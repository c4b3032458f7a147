"""A throw-away homelab repository (examples + gitopsctl.yaml) on a real git remote."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest

from gitopsctl.commands import Context
from gitopsctl.sandbox.lab.gitremote import GitRemote

from tests.fixtures.configs import seed_homelab

REPO_ROOT = Path(__file__).resolve().parents[2]



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
        files={"gitopsctl.yaml": seed_homelab(registry_url, project=project),
               ".gitignore": ".gitopsctl/\n"})
    return Homelab(remote=remote, registry_url=registry_url, project=project)


@pytest.fixture
def homelab(make_git_remote, registry_env, base_image) -> Homelab:
    """Examples on a git remote, configured for the session registry; credentials exported."""
    return make_homelab(make_git_remote, registry_env.url)
