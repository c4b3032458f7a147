"""The example apps: healthy by default, and the two ways to make them fail on purpose."""

from __future__ import annotations

import time

from gitopsctl.commands.build import build
from gitopsctl.sandbox.lab.ports import free_port
from gitopsctl.health import probe_http

SETTLE_DEADLINE = 30.0  # health checks run every 2 s with 2 retries


def _state(container) -> tuple[str, str | None]:
    container.reload()
    state = container.attrs["State"]
    return state["Status"], (state.get("Health") or {}).get("Status")


def test_fail_modes_by_environment(homelab, docker_client):
    result = build(homelab.context(), push=False)
    started = {}
    try:
        for name, built in result.images.items():
            for mode in ("none", "crash", "unhealthy"):
                port = free_port()
                started[(name, mode)] = (port, docker_client.containers.run(
                    built.image_id, detach=True, network_mode="host",
                    environment={"PORT": str(port), "FAIL_MODE": mode}))
        expected = {"none": ("running", "healthy"), "crash": ("exited", None),
                    "unhealthy": ("running", "unhealthy")}
        deadline = time.monotonic() + SETTLE_DEADLINE
        pending = dict(started)
        while pending and time.monotonic() < deadline:
            for key, (_, container) in list(pending.items()):
                status, health = _state(container)
                if status == expected[key[1]][0] and (expected[key[1]][1] is None
                                                      or health == expected[key[1]][1]):
                    del pending[key]
            time.sleep(0.3)
        assert not pending, {k: _state(c) for k, (_, c) in pending.items()}
        for (name, mode), (port, container) in started.items():
            health = probe_http(f"http://127.0.0.1:{port}/healthz")
            if mode == "none":
                assert health.status == 200 and f"ok {name} {result.source}" in health.message
                assert probe_http(f"http://127.0.0.1:{port}/version").message.endswith(result.source)
            elif mode == "unhealthy":
                assert health.status == 404
            else:
                assert container.attrs["State"]["ExitCode"] == 1
                assert "exiting at start on purpose" in container.logs().decode()
    finally:
        for _, container in started.values():
            container.remove(force=True)


def test_one_line_change_makes_the_image_crash(homelab, docker_client):
    homelab.commit({"examples/frontend/fail-mode": "crash\n"}, message="break frontend")
    result = build(homelab.context(), services=["frontend"], push=False)
    container = docker_client.containers.run(result.images["frontend"].image_id, detach=True,
                                             network_mode="host",
                                             environment={"PORT": str(free_port())})
    try:
        assert container.wait(timeout=20)["StatusCode"] == 1
    finally:
        container.remove(force=True)


def test_missing_required_secret_crashes_without_printing_values(homelab, docker_client):
    result = build(homelab.context(), services=["backend"], push=False)
    image = result.images["backend"].image_id
    port = free_port()
    out = docker_client.containers.run(image, ["sh", "-c", "sh /app/start.sh; echo rc=$?"],
                                       network_mode="host", remove=True, stderr=True,
                                       environment={"PORT": str(port), "REQUIRE_ENV": "API_TOKEN",
                                                    "OTHER": "visible-value"})
    text = out.decode()
    assert "API_TOKEN is not set" in text and "rc=1" in text
    assert "visible-value" not in text
