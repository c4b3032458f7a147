"""The on-disk git remote: seeded, pushable, refuses history rewrites."""

from __future__ import annotations

import subprocess

import pytest

from gitopsctl.sandbox.lab.gitremote import git


def test_seeded_remote_has_the_files(make_git_remote, tmp_path):
    src = tmp_path / "src" / "app"
    src.mkdir(parents=True)
    (src / "Dockerfile").write_text("FROM scratch\n")
    remote = make_git_remote({"examples/app": src}, files={"gitopsctl.yaml": "version: 1\n"})
    assert (remote.work / "examples/app/Dockerfile").read_text() == "FROM scratch\n"
    assert remote.remote_head() == remote.head()
    assert git(remote.bare, "show", "main:gitopsctl.yaml") == "version: 1"


def test_push_and_second_clone(git_remote, tmp_path):
    git_remote.write({"a.txt": "a\n"})
    sha = git_remote.commit_all("add a")
    git_remote.push()
    other = git_remote.clone(tmp_path / "other")
    assert git(other, "rev-parse", "HEAD") == sha
    assert git_remote.log()[0].endswith("add a")


def test_force_push_is_refused(git_remote):
    git_remote.write({"b.txt": "b\n"})
    git_remote.commit_all("add b")
    git_remote.push()
    git(git_remote.work, "reset", "-q", "--hard", "HEAD~1")
    git_remote.write({"c.txt": "c\n"})
    git_remote.commit_all("diverge")
    with pytest.raises(subprocess.CalledProcessError):
        git(git_remote.work, "push", "-q", "--force", "origin", "HEAD:refs/heads/main")
