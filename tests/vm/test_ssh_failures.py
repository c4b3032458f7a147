"""Strict host keys and SSH failures: each is a clear error and a failed deploy, never a hang."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from gitopsctl.sandbox.lab.ports import free_port
from gitopsctl.sandbox.lab.sshd import generate_key, known_hosts_line
from gitopsctl.targets.vm import fingerprint


def _sha256_of_pub(pub: Path) -> str:
    import paramiko

    return fingerprint(paramiko.PKey.from_path(str(pub).removesuffix(".pub")))


def test_unknown_host_key_is_refused(vm_repo, ci_target, vm_sshd, tmp_path):
    other = generate_key(tmp_path / "other_host_key")
    known = tmp_path / "known_hosts"
    known.write_text(known_hosts_line("127.0.0.9", vm_sshd.port, other.with_name(other.name + ".pub")))
    target = ci_target(known_hosts=str(known))
    report = target.deploy(vm_repo.remote.head(), time.monotonic() + 30)
    assert not report.healthy
    assert "not in known_hosts" in report.reason
    assert f"{vm_sshd.host}:{vm_sshd.port}" in report.reason
    assert _sha256_of_pub(vm_sshd.host_key.with_name(vm_sshd.host_key.name + ".pub")) in report.reason
    assert known.read_text().count("\n") == 1  # never auto-added


def test_changed_host_key_is_refused(vm_repo, ci_target, vm_sshd, tmp_path):
    impostor = generate_key(tmp_path / "impostor_key")
    known = vm_sshd.write_known_hosts(tmp_path / "known_hosts", key=impostor)
    target = ci_target(known_hosts=str(known))
    report = target.deploy(vm_repo.remote.head(), time.monotonic() + 30)
    assert not report.healthy
    assert "CHANGED" in report.reason
    assert _sha256_of_pub(impostor.with_name(impostor.name + ".pub")) in report.reason
    real = _sha256_of_pub(vm_sshd.host_key.with_name(vm_sshd.host_key.name + ".pub"))
    assert real in report.reason


def test_missing_known_hosts_is_an_error_not_trust(vm_repo, ci_target, tmp_path):
    target = ci_target(known_hosts=str(tmp_path / "nope" / "known_hosts"))
    report = target.deploy(vm_repo.remote.head(), time.monotonic() + 30)
    assert not report.healthy
    assert "known_hosts" in report.reason and "does not exist" in report.reason


def test_known_hosts_from_the_environment(vm_repo, vm_sshd):
    from gitopsctl.targets.vm import VMTarget

    config = vm_repo.config({"GITOPSCTL_TARGETS__VM__KNOWN_HOSTS": "/nonexistent/known_hosts",
                             "GITOPSCTL_TARGETS__VM__KNOWN_HOSTS_ENV": "CI_VM_KNOWN_HOSTS"})
    target = VMTarget(config, environ={"CI_VM_KNOWN_HOSTS": vm_sshd.known_hosts.read_text()})
    with target.connection() as conn:
        assert conn.run("echo connected", hide=True, in_stream=False).stdout.strip() == "connected"


def test_connection_refused(vm_repo, ci_target, vm_sshd):
    closed_port = free_port("127.0.0.2")
    target = ci_target(edit=lambda text: text.replace(f"port: {vm_sshd.port}", f"port: {closed_port}"))
    start = time.monotonic()
    report = target.deploy(
        vm_repo.remote.head(), time.monotonic() + 30)
    assert not report.healthy
    assert report.reason == f"SSH connection to 127.0.0.2:{closed_port} refused"
    assert time.monotonic() - start < 10


def test_auth_failure(vm_repo, ci_target, vm_sshd, tmp_path):
    stranger = generate_key(tmp_path / "stranger_key")
    target = ci_target(edit=lambda text: text.replace(str(vm_sshd.client_key), str(stranger)))
    report = target.deploy(
        vm_repo.remote.head(), time.monotonic() + 30)
    assert not report.healthy
    assert report.reason.startswith(f"SSH authentication as {vm_sshd.user}@127.0.0.2:{vm_sshd.port} failed")


def _remote_sync_pids(checkout: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"sync" in cmd and str(checkout).encode() in cmd:
            pids.append(int(entry.name))
    return pids


def test_connection_dropped_mid_run(vm_repo, vm_sshd):
    """The remote sync waits for the lock we hold; we kill its sshd session meanwhile."""
    import fcntl

    state = vm_repo.checkout / ".gitopsctl"
    state.mkdir(exist_ok=True)
    lock_fd = os.open(state / "sync.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(lock_fd, fcntl.LOCK_EX)
    outcome = {}
    target = vm_repo.target()
    worker = threading.Thread(target=lambda: outcome.setdefault(
        "report", target.deploy(vm_repo.remote.head(), time.monotonic() + 40)))
    try:
        worker.start()
        deadline = time.monotonic() + 20
        while not _remote_sync_pids(vm_repo.checkout) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _remote_sync_pids(vm_repo.checkout), "remote sync never started"
        time.sleep(0.5)
        assert vm_sshd.kill_sessions() >= 1
        worker.join(timeout=30)
        assert not worker.is_alive(), "client hung after the connection dropped"
    finally:
        for pid in _remote_sync_pids(vm_repo.checkout):  # the orphaned remote sync we started
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        os.close(lock_fd)
        worker.join(timeout=30)
    report = outcome["report"]
    assert not report.healthy
    assert "dropped" in report.reason, report.reason
