"""A homelab monorepo on a real bare remote: clusters/homelab, gitopsctl.yaml, app sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitopsctl.sandbox.lab.gitremote import git

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def homelab(make_git_remote):
    """GitRemote whose clone holds this repository's clusters/ and gitopsctl.yaml."""
    return make_git_remote({"clusters": REPO_ROOT / "clusters",
                            "gitopsctl.yaml": REPO_ROOT / "gitopsctl.yaml"},
                           files={"examples/frontend/app.txt": "v0\n",
                                  ".gitignore": ".gitopsctl/\n"})


def app_commit(remote, content: str, push: bool = True) -> str:
    """An app source change (what a developer pushes); returns its SHA."""
    remote.write({"examples/frontend/app.txt": content + "\n"})
    sha = remote.commit_all(f"app: {content}")
    if push:
        remote.push()
    return sha


def subjects(remote) -> list[str]:
    return [line.split(" ", 1)[1] for line in remote.log()]


def message(remote, ref: str = "refs/heads/main") -> str:
    return git(remote.bare, "log", "-1", "--format=%B", ref)
