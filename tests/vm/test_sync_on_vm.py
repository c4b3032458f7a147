"""`gitopsctl sync` run on the VM itself (as the systemd timer does): git moves, secrets,
refusals, and the compose health rules checked directly."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

from gitopsctl.composehealth import ServiceRules, wait_healthy
from gitopsctl.config import HealthCheck
from gitopsctl.sandbox.lab.gitremote import git

from tests.fixtures.configs import dump

GITOPSCTL = Path(sys.executable).parent / "gitopsctl"


def with_vm_keys(path, **keys) -> str:
    """The config at `path` with `keys` set on its VM target `vm`."""
    from ruamel.yaml import YAML

    data = YAML(typ="safe").load(path.read_text())
    data["targets"]["vm"].update(keys)
    return dump(data)


def run_sync(vm_repo, docker_engine, vm_docker_config, *args: str, output: str = "json",
             env_extra: dict | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITOPSCTL_")}
    env.update(docker_engine.env(), DOCKER_CONFIG=str(vm_docker_config), NO_COLOR="1")
    env.update(env_extra or {})
    proc = subprocess.run([str(GITOPSCTL), "--repo", str(vm_repo.checkout), "--output", output,
                           "sync", "--wait-timeout", "60", *args],
                          capture_output=True, text=True, env=env, timeout=120)
    return proc


def test_text_output_and_status_record(vm_repo, docker_engine, vm_docker_config):
    proc = run_sync(vm_repo, docker_engine, vm_docker_config, output="text")
    assert proc.returncode == 0, proc.stderr
    head = vm_repo.remote.head()
    assert f"sync updated: main at {head[:12]}" in proc.stdout
    assert "image backend:" in proc.stdout and "timings:" in proc.stdout
    status = json.loads((vm_repo.checkout / ".gitopsctl" / "sync-status.json").read_text())
    assert status["revision"] == head and status["healthy"] is True
    again = run_sync(vm_repo, docker_engine, vm_docker_config, output="text")
    assert "sync unchanged" in again.stdout
    assert "docker compose pull" not in again.stderr  # nothing pulled the second time


def test_local_changes_are_refused_and_kept(vm_repo, docker_engine, vm_docker_config, vm_images):
    compose_file = vm_repo.checkout / vm_repo.compose_path
    compose_file.write_text(compose_file.read_text() + "# hand edit on the VM\n")
    edited = compose_file.read_bytes()
    before = git(vm_repo.checkout, "rev-parse", "HEAD")
    vm_repo.deploy(vm_images.refs["v2"], message="deploy v2")
    proc = run_sync(vm_repo, docker_engine, vm_docker_config)
    assert proc.returncode == 2
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False
    assert "local changes" in doc["error"]["message"]
    assert vm_repo.compose_path in doc["error"]["message"]
    assert "Traceback" not in proc.stderr
    assert git(vm_repo.checkout, "rev-parse", "HEAD") == before
    assert compose_file.read_bytes() == edited


def test_revision_not_on_the_branch_is_refused(vm_repo, docker_engine, vm_docker_config):
    git(vm_repo.remote.work, "checkout", "-q", "-b", "side")
    vm_repo.remote.write({"side.txt": "x\n"})
    side = vm_repo.remote.commit_all("side work")
    git(vm_repo.remote.work, "push", "-q", "origin", "side")
    proc = run_sync(vm_repo, docker_engine, vm_docker_config, "--revision", side)
    assert proc.returncode == 2
    message = json.loads(proc.stdout)["error"]["message"]
    assert side in message and "origin/main" in message
    assert git(vm_repo.checkout, "rev-parse", "HEAD") == vm_repo.remote.remote_head()
    bad = run_sync(vm_repo, docker_engine, vm_docker_config, "--revision", "HEAD;rm -rf /")
    assert bad.returncode == 2
    assert "not a commit SHA" in json.loads(bad.stdout)["error"]["message"]


def test_sealed_secrets_become_a_private_env_file_never_printed(
        vm_repo, docker_engine, vm_docker_config, vm_images, tmp_path, docker_client):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from gitopsctl import sealed

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_path = tmp_path / "vm-sealing-key.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    secret_value = "s3cr3t-$HOME-not-expanded"
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "backend-secrets", "namespace": "backend"},
              "stringData": {"API_TOKEN": secret_value}}
    sealed_doc = sealed.seal_secret(secret, key.public_key())
    cfg = with_vm_keys(vm_repo.remote.work / "gitopsctl.yaml",
                       sealed_secrets=["deploy/backend-secrets.sealed.yaml"], unseal_key=str(key_path))
    vm_repo.deploy(vm_images.refs["v1"], message="add sealed secret", files={"gitopsctl.yaml": cfg,
                                    "deploy/backend-secrets.sealed.yaml": sealed.dump_manifest(sealed_doc)})
    # the compose file interpolates the secret into the container's environment
    text = vm_repo.compose_text(vm_images.refs["v1"]).replace(
        '      PORT: "', '      API_TOKEN: "${API_TOKEN}"\n      PORT: "')
    vm_repo.remote.write({vm_repo.compose_path: text})
    vm_repo.remote.commit_all("use the secret")
    vm_repo.remote.push()

    proc = run_sync(vm_repo, docker_engine, vm_docker_config)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    env_file = vm_repo.checkout / ".gitopsctl" / "backend.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert env_file.read_text() == f"API_TOKEN='{secret_value}'\n"
    assert secret_value not in proc.stdout and secret_value not in proc.stderr
    status_text = (vm_repo.checkout / ".gitopsctl" / "sync-status.json").read_text()
    assert secret_value not in status_text
    (container,) = docker_client.containers.list(
        filters={"label": f"com.docker.compose.project={vm_repo.project}"})
    assert f"API_TOKEN={secret_value}" in container.attrs["Config"]["Env"]
    # a second run leaves the env file alone (same inode: not rewritten)
    inode = env_file.stat().st_ino
    again = run_sync(vm_repo, docker_engine, vm_docker_config)
    assert json.loads(again.stdout)["action"] == "unchanged"
    assert env_file.stat().st_ino == inode


def test_wrong_unseal_key_fails_clearly_and_writes_nothing(
        vm_repo, docker_engine, vm_docker_config, vm_images, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from gitopsctl import sealed

    sealing = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_path = tmp_path / "wrong-key.pem"
    key_path.write_bytes(other.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "backend-secrets", "namespace": "backend"},
              "stringData": {"API_TOKEN": "never-shown-value"}}
    cfg = with_vm_keys(vm_repo.remote.work / "gitopsctl.yaml",
                       sealed_secrets=["deploy/s.sealed.yaml"], unseal_key=str(key_path))
    vm_repo.deploy(vm_images.refs["v1"], message="secret", files={
        "gitopsctl.yaml": cfg,
        "deploy/s.sealed.yaml": sealed.dump_manifest(sealed.seal_secret(secret, sealing.public_key()))})
    proc = run_sync(vm_repo, docker_engine, vm_docker_config)
    assert proc.returncode == 2, proc.stdout
    assert "never-shown-value" not in proc.stdout + proc.stderr
    assert not (vm_repo.checkout / ".gitopsctl" / "backend.env").exists()


def test_kept_old_image_is_a_failure(vm_repo, vm_images, docker_client, registry, docker_engine,
                                     vm_docker_config):
    """The tag moved to a new image and was pulled, but the container was never recreated."""
    from gitopsctl import compose

    tag = f"moving-{vm_repo.project}"
    ref = f"{vm_images.repository}:{tag}"
    docker_client.images.get(vm_images.refs["v1"]).tag(vm_images.repository, tag)
    assert not [e for e in docker_client.api.push(vm_images.repository, tag=tag, stream=True,
                                                  decode=True) if "error" in e]
    vm_repo.deploy(ref, message="deploy moving tag")
    assert run_sync(vm_repo, docker_engine, vm_docker_config).returncode == 0
    # CI pushes a new image under the same tag; the VM pulls it but keeps the old container
    docker_client.images.get(vm_images.refs["v2"]).tag(vm_images.repository, tag)
    assert not [e for e in docker_client.api.push(vm_images.repository, tag=tag, stream=True,
                                                  decode=True) if "error" in e]
    environ = {**os.environ, **docker_engine.env(), "DOCKER_CONFIG": str(vm_docker_config)}
    stack = compose.Compose(project=vm_repo.project, file=vm_repo.checkout / vm_repo.compose_path,
                            environ=environ)
    assert stack.pull(timeout=60).ok
    expected = compose.expected_images(docker_client, stack.services())
    assert expected["backend"].image_id == docker_client.images.get(vm_images.refs["v2"]).id
    rules = [ServiceRules("backend", ("backend",), probes=(HealthCheck(http=vm_repo.health_url),))]
    start = time.monotonic()
    report = wait_healthy(docker_client, vm_repo.project, expected, rules,
                          deadline=time.monotonic() + 30, samples=2, http_timeout=2).report
    assert not report.healthy
    assert time.monotonic() - start < 3  # at once, not after the deadline
    assert "kept the old image" in report.reason and report.reason.startswith("backend: ")

    # the same with a digest pin: the compose file asks for v2's digest, v1 runs
    pinned = {"backend": compose.ExpectedImage(vm_images.pinned("v2"), digest=vm_images.digests["v2"])}
    report = wait_healthy(docker_client, vm_repo.project, pinned, rules[:1],
                          deadline=time.monotonic() + 30, samples=2, http_timeout=2).report
    assert not report.healthy and "kept the old image" in report.reason


def test_no_healthcheck_is_a_warning_and_http_must_answer(vm_repo, vm_images, docker_engine,
                                                          vm_docker_config, docker_client):
    text = vm_repo.compose_text(vm_images.refs["v1"])
    text = text[:text.index("    healthcheck:")] + "    healthcheck:\n      disable: true\n"
    vm_repo.remote.write({vm_repo.compose_path: text})
    vm_repo.remote.commit_all("no healthcheck")
    vm_repo.remote.push()
    proc = run_sync(vm_repo, docker_engine, vm_docker_config)
    assert proc.returncode == 0, proc.stdout
    doc = json.loads(proc.stdout)
    messages = [c["message"] for c in doc["health"]["checks"]]
    assert any("no healthcheck" in m and "warning" in m for m in messages)
    assert any(m.startswith(vm_repo.health_url) and "HTTP 200" in m for m in messages)

    from gitopsctl import compose

    expected = compose.expected_images(docker_client, {"backend": vm_images.refs["v1"]})
    closed = f"http://127.0.0.1:{vm_repo.port}/missing"
    rules = [ServiceRules("backend", ("backend",), probes=(HealthCheck(http=closed),))]
    start = time.monotonic()
    report = wait_healthy(docker_client, vm_repo.project, expected, rules,
                          deadline=time.monotonic() + 3, samples=2, http_timeout=1,
                          interval=0.5).report
    assert not report.healthy and "404" in report.reason
    assert time.monotonic() - start < 6  # bounded by the deadline


def test_an_older_revision_than_live_is_superseded(vm_repo, docker_engine, vm_docker_config, vm_images):
    old = vm_repo.remote.head()
    new = vm_repo.deploy(vm_images.refs["v2"], message="deploy v2")
    assert run_sync(vm_repo, docker_engine, vm_docker_config).returncode == 0
    proc = run_sync(vm_repo, docker_engine, vm_docker_config, "--revision", old)
    assert proc.returncode == 4, proc.stdout
    error = json.loads(proc.stdout)["error"]
    assert error["kind"] == "superseded" and new[:12] in error["message"]
    assert git(vm_repo.checkout, "rev-parse", "HEAD") == new


def test_registry_down_fails_the_sync_and_keeps_the_running_stack(
        vm_repo, docker_engine, vm_docker_config, vm_images, registry_env, docker_client):
    assert run_sync(vm_repo, docker_engine, vm_docker_config).returncode == 0
    (before,) = docker_client.containers.list(
        filters={"label": f"com.docker.compose.project={vm_repo.project}"})
    vm_repo.deploy(vm_images.refs["v2"], message="deploy v2 while the registry is down")
    registry_env.stop()
    proc = run_sync(vm_repo, docker_engine, vm_docker_config)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["action"] == "failed" and doc["reason"].startswith("docker compose pull failed")
    (after,) = docker_client.containers.list(
        filters={"label": f"com.docker.compose.project={vm_repo.project}"})
    assert after.id == before.id and after.status == "running"


def test_a_held_lock_is_waited_for_until_the_deadline_only(vm_repo, docker_engine, vm_docker_config):
    import fcntl

    state = vm_repo.checkout / ".gitopsctl"
    state.mkdir(exist_ok=True)
    fd = os.open(state / "sync.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        start = time.monotonic()
        proc = run_sync(vm_repo, docker_engine, vm_docker_config, "--wait-timeout", "2")
        took = time.monotonic() - start
    finally:
        os.close(fd)
    assert proc.returncode == 1
    assert "another sync holds" in json.loads(proc.stdout)["error"]["message"]
    assert 2 <= took < 10
    assert "another sync is running" in proc.stderr or "waiting for the sync lock" in proc.stderr


def test_a_crash_after_compose_reported_healthy_is_caught_by_sampling(
        vm_repo, docker_engine, vm_docker_config, vm_images):
    """`up --wait` returns once the container is healthy; it dies 3 s later. Several
    consecutive samples are what catch it."""
    vm_repo.deploy(vm_images.refs["flap"], restart="always", message="deploy flapping backend")
    start = time.monotonic()
    proc = run_sync(vm_repo, docker_engine, vm_docker_config,
                    env_extra={"GITOPSCTL_TIMEOUTS__HEALTHY_SAMPLES": "6"})
    took = time.monotonic() - start
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1, doc
    assert "compose-up" not in [c["name"] for c in doc["health"]["checks"]]  # compose saw it healthy
    assert "restart" in doc["reason"] or "exited" in doc["reason"], doc["reason"]
    failed = next(c for c in doc["health"]["checks"] if not c["ok"])
    assert any("flap: giving up" in line for line in failed["evidence"])
    assert took < 30


def test_a_dead_container_at_the_live_revision_is_converged_again(
        vm_repo, docker_engine, vm_docker_config, docker_client):
    assert run_sync(vm_repo, docker_engine, vm_docker_config).returncode == 0
    (container,) = docker_client.containers.list(
        filters={"label": f"com.docker.compose.project={vm_repo.project}"})
    container.kill()
    proc = run_sync(vm_repo, docker_engine, vm_docker_config)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0, doc
    assert doc["action"] == "updated"
    assert any(step.startswith("drift:") for step in doc["steps"])
    assert docker_client.containers.get(container.id).status == "running"


def test_a_new_container_in_a_restart_loop_ends_compose_up_at_once(
        vm_repo, docker_engine, vm_docker_config, vm_images):
    """restart: always brings a container that exits at start back over and over;
    `up --wait` would wait for it. The agent sees the new container fail and stops
    compose, then judges the stack as always: the verdict names the container and its log."""
    vm_repo.deploy(vm_images.refs["crash"], restart="always", message="deploy crashing backend")
    start = time.monotonic()
    proc = run_sync(vm_repo, docker_engine, vm_docker_config, "--wait-timeout", "60")
    took = time.monotonic() - start
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1, doc
    up = next(c for c in doc["health"]["checks"] if c["name"] == "compose-up")
    assert "stopped waiting" in up["message"] and "new container failed" in up["message"], up
    failed = next(c for c in doc["health"]["checks"] if not c["ok"] and c["name"] != "compose-up")
    assert any("fatal: cannot start" in line for line in failed["evidence"]), failed
    assert took < 20  # compose's own wait would have run to its 60 s timeout or beyond
