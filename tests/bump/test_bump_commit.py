"""Pipeline-mode bumps commit the git record and push it safely to a real bare remote."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from gitopsctl.deploy.state import read_state

from gitopsctl import repo as gitrepo
from gitopsctl.commands import Context
from gitopsctl.bumping import bump
from gitopsctl.errors import Superseded, UsageError
from gitopsctl.sandbox.lab.gitremote import git

from .conftest import app_commit, message, subjects

FRONTEND_FILE = "clusters/homelab/apps/frontend/deployment.yaml"
BACKEND_FILE = "clusters/homelab/backend-vm/docker-compose.yml"


def ctx_for(work) -> Context:
    return Context(repo=work, config_path=work / "gitopsctl.yaml", environ={})


def test_commit_message_trailers_and_push(homelab):
    source = app_commit(homelab, "v1")
    result = bump(ctx_for(homelab.work), services=["all"], source=source, allow_unbuilt=True)
    assert result.pushed and result.committed
    assert any("no build record" in n for n in result.notes)  # fallback to <repo>:<sha7>
    log = subjects(homelab)
    assert log[0] == f"deploy(backend): {source[:7]} → harbor.lan/homelab/backend:{source[:7]} [skip ci]"
    assert log[1] == f"deploy(frontend): {source[:7]} → harbor.lan/homelab/frontend:{source[:7]} [skip ci]"
    trailers = gitrepo.parse_trailers(message(homelab))
    assert trailers == {"Gitopsctl-Source": (source,), "Gitopsctl-Stage": ("backend",),
                        "Gitopsctl-Image": (f"harbor.lan/homelab/backend:{source[:7]}",)}
    author = git(homelab.bare, "log", "-1", "--format=%an <%ae>|%cn <%ce>")
    assert author == "gitopsctl <gitopsctl@homelab.lan>|gitopsctl <gitopsctl@homelab.lan>"
    # each deploy commit touches only its service's file
    assert git(homelab.bare, "show", "--name-only", "--format=", "main") == BACKEND_FILE
    assert git(homelab.bare, "show", "--name-only", "--format=", "main~1") == FRONTEND_FILE
    assert homelab.remote_head() == homelab.head()
    live = read_state(homelab.work, "HEAD").live("frontend")
    assert live.source == source and live.image == f"harbor.lan/homelab/frontend:{source[:7]}"


def test_build_record_image_with_digest_is_used_when_present(homelab):
    from gitopsctl import buildrecord

    source = app_commit(homelab, "v1")
    ctx = ctx_for(homelab.work)
    digest = "sha256:" + "ab" * 32
    built = buildrecord.BuiltImage("frontend", "harbor.lan/homelab/frontend",
                                   (source[:7], f"main-{source[:7]}-1764200000"), digest)
    buildrecord.write_record(ctx.config, buildrecord.BuildRecord(source, {"frontend": built}))
    result = bump(ctx, services=["frontend"], source=source)
    ref = f"harbor.lan/homelab/frontend:main-{source[:7]}-1764200000@{digest}"
    assert [c.new_value for c in result.changes] == [ref]
    assert result.bumps[0].origin == "build-record" and not result.notes
    assert subjects(homelab)[0] == (f"deploy(frontend): {source[:7]} → "
                                    f"harbor.lan/homelab/frontend:main-{source[:7]}-1764200000 [skip ci]")
    assert gitrepo.parse_trailers(message(homelab))["Gitopsctl-Image"] == (ref,)
    assert git(homelab.work, "status", "--porcelain") == ""  # the record is git-ignored


def test_no_change_means_no_commit(homelab):
    source = app_commit(homelab, "v1")
    bump(ctx_for(homelab.work), services=["frontend"], source=source, allow_unbuilt=True)
    before = homelab.remote_head()
    again = bump(ctx_for(homelab.work), services=["frontend"], source=source, allow_unbuilt=True)
    assert not again.changes and not again.committed and not again.pushed
    assert homelab.remote_head() == before


def test_stale_pipeline_is_superseded_exit_4_and_changes_nothing(homelab):
    old = app_commit(homelab, "v1")
    new = app_commit(homelab, "v2")
    bump(ctx_for(homelab.work), services=["frontend"], source=new, allow_unbuilt=True)
    before_remote, before_files = homelab.remote_head(), (homelab.work / FRONTEND_FILE).read_bytes()
    with pytest.raises(Superseded) as info:
        bump(ctx_for(homelab.work), services=["frontend"], source=old, allow_unbuilt=True)
    assert info.value.exit_code == 4 and new[:7] in info.value.message
    assert homelab.remote_head() == before_remote
    assert (homelab.work / FRONTEND_FILE).read_bytes() == before_files
    assert git(homelab.work, "status", "--porcelain") == ""
    # through the CLI: exit code 4
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITOPSCTL_")}
    proc = subprocess.run([sys.executable, "-m", "gitopsctl", "bump", "--service", "frontend",
                           "--source", old, "--allow-unbuilt"], cwd=homelab.work, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 4, proc.stderr
    assert "superseded" in proc.stderr.lower() or "older" in proc.stderr


def test_rejected_push_fetches_rebases_and_retries_without_force(homelab, tmp_path):
    source = app_commit(homelab, "v1")
    # someone else pushes an unrelated commit after our clone last fetched
    other = homelab.clone(tmp_path / "other")
    (other / "README.md").write_text("moved\n")
    git(other, "add", "README.md")
    git(other, "commit", "-q", "-m", "docs: unrelated")
    git(other, "push", "-q", "origin", "HEAD:refs/heads/main")
    theirs = git(other, "rev-parse", "HEAD")

    result = bump(ctx_for(homelab.work), services=["all"], source=source, allow_unbuilt=True)
    assert result.pushed and result.push_attempts == 2
    # their commit is still there, below ours: nothing was overwritten
    assert git(homelab.bare, "merge-base", "--is-ancestor", theirs, "main", check=False) == ""
    assert subjects(homelab)[2] == "docs: unrelated"
    assert subjects(homelab)[0].startswith("deploy(backend)")
    assert subjects(homelab)[0].endswith("[skip ci]")


def test_conflicting_newer_deploy_makes_the_older_pipeline_superseded(homelab, tmp_path):
    old = app_commit(homelab, "v1")
    new = app_commit(homelab, "v2")
    git(homelab.work, "reset", "-q", "--hard", old)  # this runner checked out the old commit
    other = homelab.clone(tmp_path / "other")
    bump(ctx_for(other), services=["frontend"], source=new, allow_unbuilt=True)   # the newer pipeline wins the race
    winner = homelab.remote_head()
    with pytest.raises(Superseded):
        bump(ctx_for(homelab.work), services=["frontend"], source=old, allow_unbuilt=True)
    assert homelab.remote_head() == winner
    assert git(homelab.work, "status", "--porcelain") == ""


def test_conflicting_older_deploy_is_redone_on_the_new_tip(homelab, tmp_path):
    old = app_commit(homelab, "v1")
    new = app_commit(homelab, "v2")
    other = homelab.clone(tmp_path / "other")
    bump(ctx_for(other), services=["frontend"], source=old, allow_unbuilt=True)   # the older pipeline pushed first
    result = bump(ctx_for(homelab.work), services=["frontend"], source=new, allow_unbuilt=True)
    assert result.pushed
    deploy = read_state(homelab.bare, "HEAD").live("frontend")
    assert deploy.source == new
    content = git(homelab.bare, "show", f"main:{FRONTEND_FILE}")
    assert f"frontend:{new[:7]} #" in content and old[:7] not in content
    assert subjects(homelab)[1].startswith(f"deploy(frontend): {old[:7]}")


def test_concurrent_pushers_all_land_linearly(homelab, tmp_path):
    """Two clones bump different services at the same moment; both land, no force."""
    source = app_commit(homelab, "v1")
    other = homelab.clone(tmp_path / "other")
    errors: list[BaseException] = []

    def run(work, service):
        try:
            bump(ctx_for(work), services=[service], source=source, allow_unbuilt=True)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(homelab.work, "frontend")),
               threading.Thread(target=run, args=(other, "backend"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    log = subjects(homelab)
    assert sorted(log[:2]) == sorted([
        f"deploy(backend): {source[:7]} → harbor.lan/homelab/backend:{source[:7]} [skip ci]",
        f"deploy(frontend): {source[:7]} → harbor.lan/homelab/frontend:{source[:7]} [skip ci]"])
    assert git(homelab.bare, "rev-list", "--merges", "--count", "main") == "0"


def test_no_push_commits_locally_only(homelab):
    source = app_commit(homelab, "v1")
    before = homelab.remote_head()
    result = bump(ctx_for(homelab.work), services=["frontend"], source=source, allow_unbuilt=True, push=False)
    assert result.committed and not result.pushed
    assert homelab.remote_head() == before and homelab.head() != before


def test_explicit_policy_commits_with_the_service_from_the_config(homelab):
    ref = "harbor.lan/homelab/frontend:main-abcdef0-1764200000@sha256:" + "3" * 64
    result = bump(ctx_for(homelab.work), policies=[f"flux-system:frontend={ref}"])
    assert result.pushed
    assert subjects(homelab)[0] == \
        "deploy(frontend): manual → harbor.lan/homelab/frontend:main-abcdef0-1764200000 [skip ci]"
    assert gitrepo.parse_trailers(message(homelab))["Gitopsctl-Image"] == (ref,)


def test_old_checkout_sees_a_newer_deploy_on_the_remote(homelab, tmp_path):
    """CI checks out the pipeline's commit; main has moved on with a newer deploy."""
    old = app_commit(homelab, "v1")
    new = app_commit(homelab, "v2")
    other = homelab.clone(tmp_path / "other")
    bump(ctx_for(other), services=["frontend"], source=new, allow_unbuilt=True)
    ci = homelab.clone(tmp_path / "ci")
    git(ci, "checkout", "-q", "--detach", old)
    with pytest.raises(Superseded):
        bump(ctx_for(ci), services=["frontend"], source=old, allow_unbuilt=True)
    assert git(ci, "rev-parse", "HEAD") == old and git(ci, "status", "--porcelain") == ""


def test_uncommitted_edits_in_a_target_file_are_never_swept_into_a_deploy(homelab):
    source = app_commit(homelab, "v1")
    deployment = homelab.work / FRONTEND_FILE
    edited = deployment.read_text().replace("replicas: 2", "replicas: 3")
    deployment.write_text(edited)
    with pytest.raises(UsageError) as info:
        bump(ctx_for(homelab.work), services=["frontend"], source=source, allow_unbuilt=True)
    assert FRONTEND_FILE in info.value.message
    assert deployment.read_text() == edited
    assert homelab.remote_head() == homelab.head()
