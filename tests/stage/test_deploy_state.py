"""Deploy state from git: live deploys, rollbacks, superseded — on real repositories."""

from __future__ import annotations

import pytest

from gitopsctl import repo as gitrepo
from gitopsctl.deploy import automation
from gitopsctl.deploy.state import ensure_not_superseded, read_state
from gitopsctl.errors import Superseded
from gitopsctl.sandbox.lab.gitremote import git, make_git_remote

AUTHOR = gitrepo.Author("gitopsctl", "gitopsctl@homelab.lan")


def deploy(remote, service: str, source: str, image: str) -> str:
    remote.write({f"{service}.txt": image + "\n"})
    git(remote.work, "add", "-A")
    message = gitrepo.format_message(
        f"deploy({service}): {source[:7]} → {image} [skip ci]",
        [("Gitopsctl-Source", source), ("Gitopsctl-Stage", service), ("Gitopsctl-Image", image)])
    git(remote.work, "commit", "-q", "-m", message)
    return remote.head()


def app_commit(remote, text: str) -> str:
    remote.write({"app.txt": text})
    return remote.commit_all(f"app: {text}")


@pytest.fixture
def remote(tmp_path):
    return make_git_remote(tmp_path, files={"README": "homelab\n"})


def test_live_deploy_is_newest_not_reverted(remote):
    s1 = app_commit(remote, "one")
    d1 = deploy(remote, "frontend", s1, "fe:1")
    s2 = app_commit(remote, "two")
    d2 = deploy(remote, "frontend", s2, "fe:2")
    state = read_state(remote.work, "HEAD")
    assert state.live("frontend").commit == d2
    revert = gitrepo.revert_onto(remote.work, gitrepo.head(remote.work), [d2], gitrepo.format_message(
        "rollback: x [skip ci]", [("Reverts", d2), ("Gitopsctl-Rollback-Of", s2)]), AUTHOR)
    git(remote.work, "merge", "-q", "--ff-only", revert)
    state = read_state(remote.work, "HEAD")
    assert state.live("frontend").commit == d1
    assert state.rollback_of(s2) is not None and state.rollback_of(s1) is None
    assert state.live_of_source(s2) == []
    assert [r.commit for r in state.live_of_source(s1)] == [d1]
    assert (remote.work / "frontend.txt").read_text() == "fe:1\n"


def test_older_source_is_superseded(remote):
    s1 = app_commit(remote, "one")
    s2 = app_commit(remote, "two")
    deploy(remote, "frontend", s2, "fe:2")
    state = read_state(remote.work, "HEAD")
    with pytest.raises(Superseded) as info:
        ensure_not_superseded(remote.work, state, s1, ["frontend", "backend"])
    assert info.value.exit_code == 4
    ensure_not_superseded(remote.work, state, s2, ["frontend"])  # the same source: resume
    s3 = app_commit(remote, "three")
    ensure_not_superseded(remote.work, state, s3, ["frontend"])  # newer: go ahead


IUA = """\
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImagePolicy
metadata:
  name: frontend
---
# automation writes the same markers as gitopsctl
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageUpdateAutomation
metadata:
  name: homelab
  namespace: flux-system
spec:
  interval: 30m   # how often
  sourceRef:
    kind: GitRepository
    name: flux-system
"""


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_suspend_and_resume_image_automation_touch_one_line(tmp_path, newline):
    path = tmp_path / "clusters" / "automation.yaml"
    path.parent.mkdir()
    path.write_bytes(IUA.replace("\n", newline).encode())
    found = automation.find(tmp_path / "clusters", "homelab", "flux-system")
    assert found is not None and not found.suspended
    text = path.read_bytes().decode()
    suspended = automation.suspended_text(text, found, True)
    assert suspended == IUA.replace("spec:\n", "spec:\n  suspend: true\n").replace("\n", newline)
    path.write_bytes(suspended.encode())
    again = automation.find(tmp_path / "clusters", "homelab", "flux-system")
    assert again.suspended and automation.suspended_text(suspended, again, True) == suspended
    resumed = automation.suspended_text(suspended, again, False)
    assert resumed == IUA.replace("spec:\n", "spec:\n  suspend: false\n").replace("\n", newline)
    assert automation.find(tmp_path / "clusters", "other", "flux-system") is None
