"""The private Docker engine: starts, runs host-network containers, can be shared, stops clean."""

from __future__ import annotations

import os
import time

from gitopsctl.sandbox.lab.dockerd import DockerEngine, connect_or_start, ping
from gitopsctl.sandbox.lab.ports import free_port
from gitopsctl.health import probe_http


def test_engine_answers_on_its_own_short_socket(docker_engine):
    assert docker_engine.owned
    assert docker_engine.docker_host.startswith("unix:///tmp/gd-")
    assert len(docker_engine.docker_host) - len("unix://") < 100
    assert ping(docker_engine.docker_host)
    assert os.environ["DOCKER_HOST"] == docker_engine.docker_host


def test_engine_runs_without_bridge_or_iptables(docker_client):
    networks = {n.name for n in docker_client.networks.list()}
    assert "bridge" not in networks
    assert "host" in networks


def test_host_network_container_serves_on_loopback(docker_client, base_image):
    port = free_port()
    container = docker_client.containers.run(
        base_image, ["httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/www"],
        network_mode="host", detach=True, remove=False)
    try:
        deadline = time.monotonic() + 10
        result = probe_http(f"http://127.0.0.1:{port}/")
        while not result.status and time.monotonic() < deadline:
            time.sleep(0.1)
            result = probe_http(f"http://127.0.0.1:{port}/")
        # /www is empty: busybox httpd answers, with 404, which proves it listens on loopback
        assert result.status == 404
    finally:
        container.remove(force=True)


def test_connect_or_start_reuses_a_running_engine(docker_engine, tmp_path):
    engine = connect_or_start(tmp_path)  # DOCKER_HOST points at the session engine
    assert not engine.owned
    assert engine.docker_host == docker_engine.docker_host
    engine.stop()  # must leave the shared engine alone
    assert ping(docker_engine.docker_host)


def test_start_and_stop_leave_nothing_running(tmp_path):
    engine = DockerEngine.start(tmp_path / "engine")
    pid = engine.process.pid
    run_dir = engine.run_dir
    engine.stop()
    assert not ping(engine.docker_host)
    assert engine.process.poll() is not None, f"dockerd {pid} still running"
    assert not run_dir.exists()
    mounts = open("/proc/self/mounts").read()
    assert str(tmp_path) not in mounts
