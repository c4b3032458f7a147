"""CI -> VM: remote `gitopsctl sync` over real SSH against real dockerd, registry, compose."""

from __future__ import annotations

import time

from gitopsctl.health import probe_http


def test_healthy_sync_then_second_sync_is_a_noop(vm_repo, vm_images, docker_client):
    sha = vm_repo.remote.head()
    target = vm_repo.target()
    report = target.deploy(sha, time.monotonic() + 90)
    assert report.healthy, report.to_dict()
    assert report.revision == sha
    remote = report.details["remote"]
    assert remote["action"] == "updated"
    assert remote["images"]["backend"]["reference"] == vm_images.refs["v1"]
    assert any(c.name == "backend: http-ci" and c.ok for c in report.checks)
    assert probe_http(vm_repo.health_url).ok
    (container,) = docker_client.containers.list(
        filters={"label": f"com.docker.compose.project={vm_repo.project}"})
    first_id = container.id

    again = target.deploy(sha, time.monotonic() + 60)
    assert again.healthy, again.to_dict()
    remote2 = again.details["remote"]
    assert remote2["action"] == "unchanged"
    assert "pull" not in remote2["timings"] and "up" not in remote2["timings"]
    (container2,) = docker_client.containers.list(
        filters={"label": f"com.docker.compose.project={vm_repo.project}"})
    assert container2.id == first_id  # nothing recreated


def _checks_text(report) -> str:
    return "\n".join([c.message for c in report.checks] + [e for c in report.checks for e in c.evidence])


def test_unhealthy_backend_fails_fast_and_a_revert_heals_it(vm_repo, vm_images):
    target = vm_repo.target()
    bad = vm_repo.deploy(vm_images.refs["sick"], message="deploy sick backend")
    start = time.monotonic()
    report = target.deploy(bad, time.monotonic() + 90)
    took = time.monotonic() - start
    assert not report.healthy
    assert took < 20, f"unhealthy detection took {took:.1f}s, not fail-fast"
    text = _checks_text(report)
    assert f"{vm_repo.project}-backend-1" in text
    assert "unhealthy" in report.reason
    assert "exit code" in text and "restarts" in text
    assert "app starting mode=sick" in text  # last log lines are evidence
    # rollback = a revert commit, a fast-forward for the VM
    from gitopsctl.sandbox.lab.gitremote import git

    git(vm_repo.remote.work, "revert", "--no-edit", bad)
    vm_repo.remote.push()
    healed = target.deploy(vm_repo.remote.head(), time.monotonic() + 90)
    assert healed.healthy, healed.to_dict()
    assert healed.details["remote"]["images"]["backend"]["reference"] == vm_images.refs["v1"]


def test_a_connection_opened_ahead_is_the_one_the_sync_uses(vm_repo):
    """preconnect() opens the SSH connection in the background; the sync takes it over
    (and closes it), so the next sync without a preconnect connects afresh."""
    target = vm_repo.target()
    target.preconnect()
    early = target._early
    deadline = time.monotonic() + 20
    while not early._done and time.monotonic() < deadline:
        time.sleep(0.05)
    assert early._conn is not None and early._conn.client.get_transport().is_active()
    report = target.deploy(vm_repo.remote.head(), time.monotonic() + 90)
    assert report.healthy, report.to_dict()
    assert target._early is None and early._handed
    assert early._conn.client.get_transport() is None or not early._conn.client.get_transport().is_active()
    again = target.deploy(vm_repo.remote.head(), time.monotonic() + 60)
    assert again.healthy, again.to_dict()


def test_a_connection_ahead_that_fails_leaves_the_error_to_the_sync(vm_repo):
    """A VM that refuses SSH: the early connect fails quietly; the sync reports it."""
    import dataclasses

    target = vm_repo.target()
    from gitopsctl.sandbox.lab.ports import free_port

    target.vm = dataclasses.replace(target.vm, port=free_port())
    target.preconnect()
    report = target.deploy(vm_repo.remote.head(), time.monotonic() + 30)
    assert not report.healthy
    assert "refused" in report.reason, report.reason


def test_crash_loop_with_restart_policy_fails_fast(vm_repo, vm_images):
    bad = vm_repo.deploy(vm_images.refs["crash"], restart="always", message="deploy crashing backend")
    start = time.monotonic()
    report = vm_repo.target().deploy(bad, time.monotonic() + 90)
    took = time.monotonic() - start
    assert not report.healthy
    assert took < 20, f"crash loop detection took {took:.1f}s"
    text = _checks_text(report)
    assert f"{vm_repo.project}-backend-1" in text
    assert "fatal: cannot start" in text
    assert "exit code 3" in text or "restart" in report.reason or "restarting" in report.reason


def test_pinned_digest_is_checked_against_the_running_image(vm_repo, vm_images):
    sha = vm_repo.deploy(vm_images.pinned("v2"), message="deploy v2 pinned")
    report = vm_repo.target().deploy(sha, time.monotonic() + 90)
    assert report.healthy, report.to_dict()
    assert report.details["remote"]["images"]["backend"]["digest"] == vm_images.digests["v2"]
