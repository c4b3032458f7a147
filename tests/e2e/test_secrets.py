"""No secret leaves gitopsctl (issue 12, point 5), on the real lab.

A backend that prints its unsealed API_TOKEN and crashes: the value must reach neither
stage's output, nor any commit on the remote (the rollback's Evidence trailer quotes the
container's log), nor `status`; the evidence itself must survive, redacted. And a
git.remote holding a URL with a token is a config error that prints no part of the token.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gitopsctl import repo as gitrepo
from gitopsctl.redact import MARKER

LEAK = {"examples/backend/fail-mode": "leak-secret\n"}
REMOTE_TOKEN = "s3cr3t-token"


def unsealed_api_token(lab) -> str:
    """The value the VM's sync unsealed into its env file (the lab seals a random one)."""
    text = (lab.vm_checkout / ".gitopsctl" / "backend.env").read_text()
    match = re.search(r"^API_TOKEN='([^']+)'$", text, re.M)
    assert match, f"no API_TOKEN in the VM's env file: {text!r}"
    return match.group(1)


def remote_history(lab) -> str:
    """Every commit of the remote, messages and patches, every ref."""
    return subprocess.run(["git", "log", "-p", "--all", "--format=%H%n%B"], cwd=lab.remote.bare,
                          capture_output=True, text=True, check=True, timeout=60).stdout


@pytest.mark.e2e
def test_a_leaked_secret_is_redacted_from_output_and_the_rollback_commit(shared_lab):
    lab = shared_lab
    secret = unsealed_api_token(lab)
    sha = lab.commit_app_change(LEAK, "backend: print the token and crash")
    built = lab.gitopsctl("-o", "json", "build", "--source", sha)
    assert built.returncode == 0, built.stderr

    staged = lab.gitopsctl("-o", "json", "stage", "--source", sha)
    assert staged.returncode == 1, staged.stderr  # rolled back, previous version healthy
    doc = json.loads(staged.stdout)
    assert doc["outcome"] == "rolled-back", doc

    history = remote_history(lab)
    status = lab.gitopsctl("-o", "json", "status")
    # the registry robot's secret (CI's $HARBOR_PASSWORD) and the kubeconfig's token likewise
    for value in (secret, lab.registry.password, lab.kube.token):
        assert value not in staged.stdout + staged.stderr
        assert value not in history
        assert value not in status.stdout + status.stderr
    sync_status = (lab.vm_checkout / ".gitopsctl" / "sync-status.json").read_text()
    assert secret not in sync_status

    # the evidence is still there, with the value replaced: redaction, not silence
    log = gitrepo.deploy_log(lab.remote.bare, "refs/heads/main")
    assert log[0].kind == "rollback" and log[0].source == sha
    message = gitrepo.open_repo(lab.remote.bare).commit(log[0].commit).message
    evidence = message[message.index("Evidence:"):]
    # The backend printed `API_TOKEN=<value>`; no pattern matches that line, so the marker
    # there means the VM registered the value it unsealed and hid it, the evidence kept.
    assert f"API_TOKEN={MARKER}" in evidence, message
    assert f"API_TOKEN={MARKER}" in staged.stdout

    lab.commit_app_change({"examples/backend/fail-mode": "none\n"}, "backend: fix")


# ---------------------------------------------------------------- git.remote

def _run(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("GITOPSCTL_")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "gitopsctl", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def _homelab(tmp_path: Path, remote: str | None) -> Path:
    from ruamel.yaml import YAML

    root = Path(__file__).resolve().parents[2]
    yaml = YAML(typ="safe")
    config = yaml.load((root / "examples" / "gitopsctl.yaml").read_text())
    if remote is not None:
        config.setdefault("git", {})["remote"] = remote
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, timeout=30)
    with (tmp_path / "gitopsctl.yaml").open("w") as fh:
        YAML().dump(config, fh)
    return tmp_path


@pytest.mark.parametrize("remote", [
    f"https://ci:{REMOTE_TOKEN}@git.lan/homelab.git",
    f"https://{REMOTE_TOKEN}@git.lan/homelab.git",
    f"ci:{REMOTE_TOKEN}@git.lan:homelab.git",
])
def test_a_url_with_credentials_in_git_remote_is_a_config_error_that_prints_no_token(tmp_path, remote):
    repo = _homelab(tmp_path, remote)
    for args in (["config"], ["-o", "json", "config"], ["-o", "json", "status"], ["status"]):
        result = _run(*args, cwd=repo)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert REMOTE_TOKEN not in result.stdout + result.stderr, args
        assert "git.remote" in result.stderr and "not a URL" in result.stderr
        assert "gitopsctl.yaml:" in result.stderr  # file:line
    doc = json.loads(_run("-o", "json", "config", cwd=repo).stdout)
    assert doc["ok"] is False and doc["error"]["details"]["key"] == "git.remote"


def test_the_same_url_from_the_environment_is_refused_without_echo(tmp_path):
    repo = _homelab(tmp_path, None)
    env = {"GITOPSCTL_GIT__REMOTE": f"https://ci:{REMOTE_TOKEN}@git.lan/homelab.git"}
    result = _run("-o", "json", "status", cwd=repo, env=env)
    assert result.returncode == 2, result.stderr
    assert REMOTE_TOKEN not in result.stdout + result.stderr
    assert "GITOPSCTL_GIT__REMOTE" in result.stderr


def test_a_remote_name_is_accepted(tmp_path):
    repo = _homelab(tmp_path, "gitea-upstream")
    result = _run("config", cwd=repo)
    assert result.returncode == 0, result.stderr
    assert "gitea-upstream" in result.stdout
