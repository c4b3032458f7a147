"""Symbolic links are never replaced or written through; leaving or dangling ones are reported.

Seen before the fix: `bump` replaced a committed link with a regular file (git mode
120000 -> 100644), including a link to a file outside the repository, whose edited
content was then committed in the link's place. Driven through the real CLI on a real
repository with a real bare remote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gitopsctl.sandbox.lab.gitremote import git

REPO_ROOT = Path(__file__).resolve().parents[2]
POLICY = "flux-system:frontend"
NEW_REF = "harbor.lan/homelab/frontend:main-9f8e7d6-1764200000"
APPS = "clusters/homelab/apps/frontend"
MARKED = ('apiVersion: v1\nkind: Pod\nmetadata:\n  name: extra\nspec:\n  containers:\n'
          '    - name: app\n      image: harbor.lan/homelab/frontend:main-1a2b3c4-1 '
          f'# {{"$imagepolicy": "{POLICY}"}}\n')


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITOPSCTL_")}
    return subprocess.run([sys.executable, "-m", "gitopsctl", "--no-color", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)


def modes(root: Path, ref: str | None = None) -> dict[str, str]:
    out = git(root, "ls-tree", "-r", ref) if ref else git(root, "ls-files", "-s")
    rows = {}
    for line in out.splitlines():
        meta, path = line.split("\t", 1)
        rows[path] = meta.split()[0]
    return rows


@pytest.fixture
def linked(make_git_remote, tmp_path):
    """The homelab repository with four links under the frontend's path, pushed.

    outside.yaml -> a marked file outside the repository
    dangling.yaml -> nothing
    inside.yaml -> deployment.yaml next to it (in scope: scanned as itself)
    shared.yaml -> a marked file elsewhere in the repository (out of the frontend's scope)
    """
    outside = tmp_path / "outside" / "secret-team-file.yaml"
    outside.parent.mkdir()
    outside.write_text(MARKED)
    remote = make_git_remote({"clusters": REPO_ROOT / "clusters",
                              "gitopsctl.yaml": REPO_ROOT / "gitopsctl.yaml"},
                             files={"shared/extra.yaml": MARKED, ".gitignore": ".gitopsctl/\n"})
    apps = remote.work / APPS
    os.symlink(outside, apps / "outside.yaml")
    os.symlink("does-not-exist.yaml", apps / "dangling.yaml")
    os.symlink("deployment.yaml", apps / "inside.yaml")
    os.symlink("../../../../shared/extra.yaml", apps / "shared.yaml")
    os.symlink(outside.parent, apps / "outside-dir")
    remote.commit_all("links")
    remote.push()
    return remote, outside


LINKS = ("outside.yaml", "dangling.yaml", "inside.yaml", "shared.yaml", "outside-dir")
REPORTED = {"outside.yaml": "leaving the repository", "dangling.yaml": "dangling",
            "shared.yaml": "outside the scanned paths", "outside-dir": "leaving the repository"}


def _assert_links_intact(remote, outside: Path, ref: str | None = None) -> None:
    tree = modes(remote.work, ref)
    for name in LINKS:
        assert tree[f"{APPS}/{name}"] == "120000", (name, tree[f"{APPS}/{name}"])
        assert (remote.work / APPS / name).is_symlink()
    assert outside.read_text() == MARKED
    assert (remote.work / "shared/extra.yaml").read_text() == MARKED


def test_bump_commits_and_pushes_without_touching_links(linked):
    remote, outside = linked
    result = run("--output", "json", "bump", "--policy", f"{POLICY}={NEW_REF}", cwd=remote.work)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    changed = {c["file"] for c in doc["changes"]}
    assert changed == {f"{APPS}/deployment.yaml"}  # the in-scope target, under its own name
    skipped = {Path(s["file"]).name: s["reason"] for b in doc["bumps"] for s in b["skipped_links"]}
    assert set(skipped) == set(REPORTED)
    for name, reason in REPORTED.items():
        assert reason in skipped[name], skipped
    assert remote.remote_head() == remote.head()
    _assert_links_intact(remote, outside)
    _assert_links_intact(remote, outside, "refs/heads/main")
    # the deploy commit changed exactly the one regular file
    assert git(remote.work, "show", "--name-only", "--format=", "HEAD") == f"{APPS}/deployment.yaml"
    assert NEW_REF in (remote.work / APPS / "deployment.yaml").read_text()


def test_explicit_path_bump_reports_skips_in_text(linked):
    remote, outside = linked
    result = run("bump", "--path", APPS, "--policy", f"{POLICY}={NEW_REF}", "--no-commit",
                 cwd=remote.work)
    assert result.returncode == 0, result.stderr
    for name, reason in REPORTED.items():
        assert f"{APPS}/{name}: left alone (" in result.stdout, result.stdout
    assert "inside.yaml" not in result.stdout
    _assert_links_intact(remote, outside)
    assert git(remote.work, "status", "--porcelain") == f"M {APPS}/deployment.yaml"


def test_a_link_given_as_the_path_is_not_followed(linked):
    remote, outside = linked
    before = git(remote.work, "rev-parse", "HEAD")
    result = run("--output", "json", "bump", "--path", f"{APPS}/outside.yaml", "--policy",
                 f"{POLICY}={NEW_REF}", "--no-commit", cwd=remote.work)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["changes"] == []
    assert [s["file"] for s in doc["bumps"][0]["skipped_links"]] == [f"{APPS}/outside.yaml"]
    _assert_links_intact(remote, outside)
    assert git(remote.work, "status", "--porcelain") == ""
    assert git(remote.work, "rev-parse", "HEAD") == before


def test_check_warns_about_skipped_links_and_changes_nothing(linked):
    remote, outside = linked
    result = run("--output", "json", "check", cwd=remote.work)
    doc = json.loads(result.stdout)
    warned = {Path(f["file"]).name: f for f in doc["findings"] if f["rule"] == "GOC013"}
    assert set(warned) == set(REPORTED), doc["findings"]
    assert all(f["severity"] == "warning" for f in warned.values())
    assert not [f for f in doc["findings"] if f["severity"] == "error"], doc["findings"]
    assert result.returncode == 0, result.stdout
    _assert_links_intact(remote, outside)
    assert git(remote.work, "status", "--porcelain") == ""


def test_writer_refuses_a_link_swapped_in_after_planning(tmp_path):
    """The last line of defence: write_atomic never replaces or writes through a link."""
    from gitopsctl.errors import InputError
    from gitopsctl.setters import FilePlan, FileScan, write_plans

    target = tmp_path / "target.yaml"
    target.write_text("a: 1\n")
    regular = tmp_path / "regular.yaml"
    regular.write_text("b: 1\n")
    link = tmp_path / "link.yaml"
    os.symlink(target, link)
    plans = [FilePlan(FileScan(regular, "regular.yaml", "b: 1\n"), [], "b: 2\n"),
             FilePlan(FileScan(link, "link.yaml", "a: 1\n"), [], "a: 2\n")]
    with pytest.raises(InputError, match="symbolic link"):
        write_plans(plans)
    assert link.is_symlink() and target.read_text() == "a: 1\n"
    assert regular.read_text() == "b: 1\n"  # the file already written was put back
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.yaml", "regular.yaml",
                                                           "target.yaml"]
