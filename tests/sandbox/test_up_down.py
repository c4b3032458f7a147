"""`sandbox up` keeps the homelab running for a person; `sandbox down` stops it cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.sandbox.conftest import lab_containers_and_images, processes_naming, run_cli

pytestmark = pytest.mark.e2e


def _sourced(env_file, env: dict[str, str]) -> dict[str, str]:
    """The environment a shell has after `source sandbox.env` (so the file must be valid shell)."""
    out = subprocess.run(["bash", "-c", 'source "$1" && env -0', "_", str(env_file)], env=env,
                         capture_output=True, check=True).stdout.decode()
    return dict(item.split("=", 1) for item in out.split("\0") if "=" in item)


def _get(url: str) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as resp:
        return resp.status


def test_up_serves_until_down_then_nothing_is_left(tmp_path, cli_env, docker_engine, docker_client):
    workdir = tmp_path / "up"
    env = {**cli_env, "DOCKER_HOST": docker_engine.docker_host}
    log = open(tmp_path / "up.err", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "gitopsctl", "-o", "json", "sandbox", "up",
                             "--dir", str(workdir)], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        state_file = workdir / "sandbox-state.json"
        deadline = time.monotonic() + 240
        while not state_file.exists():
            log.seek(0)
            assert proc.poll() is None, f"sandbox up exited {proc.returncode}:\n{log.read()[-3000:]}"
            assert time.monotonic() < deadline, "sandbox up never wrote its state file"
            time.sleep(0.5)
        state = json.loads(state_file.read_text())
        assert state["pid"] == proc.pid
        assert _get(state["frontend_url"]) == 200
        assert _get(state["backend_url"]) == 200

        # the printed recipe works: source the env file, run status in the CI clone
        env_file = workdir / "sandbox.env"
        assert env_file.stat().st_mode & 0o777 == 0o600
        exported = _sourced(env_file, cli_env)
        assert {"KUBECONFIG", "DOCKER_HOST", "HARBOR_PASSWORD"} <= set(exported)
        assert exported["PATH"].split(":")[0] == str(Path(sys.executable).parent)
        status = run_cli(["-o", "json", "status"], exported, cwd=state["ci_clone"])
        assert status.returncode == 0, status.stderr
        assert all(s["health"]["healthy"] for s in json.loads(status.stdout)["services"])
        printed = (tmp_path / "up.err").read_text()
        assert f"cd {state['ci_clone']}" in printed and "gitopsctl status" in printed
        assert exported["HARBOR_PASSWORD"] not in printed  # the secret stays in the 0600 file

        # down without --dir finds the sandbox through the pointer `up` recorded
        down = run_cli(["-o", "json", "sandbox", "down"], env, timeout=180)
        assert down.returncode == 0, down.stderr
        doc = json.loads(down.stdout)
        assert doc["was_running"] is True and doc["leftovers"] == []
        assert proc.wait(timeout=30) == 0
        up_doc = json.loads(proc.stdout.read())
        assert up_doc["cleanup"]["leftovers"] == []
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=120)
        log.close()
    assert not workdir.exists()
    assert processes_naming(workdir) == []
    assert lab_containers_and_images(docker_client, state["footprint"]) == []
    assert not (tmp_path / "home" / "state" / "gitopsctl" / "sandbox-dir").exists()
