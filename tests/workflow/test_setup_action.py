""".gitea/actions/setup-gitopsctl/setup.sh run directly, as the action runs it: which
gitopsctl it chooses, what it puts on PATH for later steps, and what it refuses.

The act runs in test_deploy_workflow.py go through the action; these cover the choices
those runs do not take, in seconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .actrun import REPO_ROOT
from .runnerhost import RUNNER_PATH, RunnerHost

SETUP = REPO_ROOT / ".gitea" / "actions" / "setup-gitopsctl" / "setup.sh"


def _setup(tmp_path: Path, workspace: Path, env: dict[str, str] | None = None):
    """Run setup.sh as the runner would; returns (process, GITHUB_ENV lines, GITHUB_PATH lines)."""
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir(exist_ok=True)
    github_env, github_path = tmp_path / "github-env", tmp_path / "github-path"
    github_env.write_text("")
    github_path.write_text("")
    full = {"PATH": RUNNER_PATH, "HOME": str(tmp_path), "GITHUB_WORKSPACE": str(workspace),
            "RUNNER_TEMP": str(runner_temp), "GITHUB_ENV": str(github_env),
            "GITHUB_PATH": str(github_path), **(env or {})}
    proc = subprocess.run([str(SETUP)], cwd=workspace, env=full, capture_output=True, text=True,
                          timeout=180, stdin=subprocess.DEVNULL)
    return proc, github_env.read_text().splitlines(), github_path.read_text().splitlines()


def _homelab(tmp_path: Path) -> Path:
    workspace = tmp_path / "homelab"
    (workspace / "clusters").mkdir(parents=True)
    (workspace / "gitopsctl.yaml").write_text("version: 2\n")
    return workspace


def _own_source(tmp_path: Path) -> Path:
    workspace = tmp_path / "gitopsctl-checkout"
    workspace.mkdir()
    shutil.copytree(REPO_ROOT / "gitopsctl", workspace / "gitopsctl",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", workspace / "pyproject.toml")
    return workspace


def test_a_homelab_without_gitopsctl_anywhere_is_told_what_to_set(tmp_path):
    proc, github_env, _ = _setup(tmp_path, _homelab(tmp_path))
    assert proc.returncode == 1
    assert "::error::no gitopsctl on the runner's PATH: set the variable GITOPSCTL_INSTALL" in proc.stdout
    assert github_env == ["GITOPSCTL_DEFAULT_TEST_COMMAND=gitopsctl check"]


def test_the_runners_python_runs_gitopsctl_for_a_homelab(tmp_path):
    proc, github_env, github_path = _setup(tmp_path, _homelab(tmp_path),
                                           {"GITOPSCTL_CI_PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert github_env == ["GITOPSCTL_DEFAULT_TEST_COMMAND=gitopsctl check"]  # no PYTHONPATH
    shims = tmp_path / "runner-temp" / "gitopsctl-bin"
    # the runner prepends each line: the shims end up first, the tools beside python next
    assert github_path == [str(Path(sys.executable).parent), str(shims)]
    version = subprocess.run([str(shims / "gitopsctl"), "--version"], capture_output=True,
                             text=True, timeout=60, stdin=subprocess.DEVNULL).stdout
    assert version.startswith("gitopsctl ") and version.strip() in proc.stdout
    assert f"run by {sys.executable}" in proc.stdout


def test_gitopsctls_own_checkout_runs_in_place_and_tests_with_pytest(tmp_path):
    workspace = _own_source(tmp_path)
    proc, github_env, _ = _setup(tmp_path, workspace, {"GITOPSCTL_CI_PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert github_env == ["GITOPSCTL_DEFAULT_TEST_COMMAND=python -m pytest",
                          f"PYTHONPATH={workspace}"]
    assert f"from {workspace}/gitopsctl, run by {sys.executable}" in proc.stdout


def test_gitopsctls_own_checkout_refuses_code_from_elsewhere(tmp_path):
    """The pushed commit is what must be tested: a gitopsctl/ that resolves outside the
    checkout (here a symlink to another copy) is refused."""
    workspace = tmp_path / "gitopsctl-checkout"
    workspace.mkdir()
    (workspace / "gitopsctl").symlink_to(REPO_ROOT / "gitopsctl")
    shutil.copy(REPO_ROOT / "pyproject.toml", workspace / "pyproject.toml")
    proc, _, github_path = _setup(tmp_path, workspace, {"GITOPSCTL_CI_PYTHON": sys.executable})
    assert proc.returncode == 1
    assert f"::error::gitopsctl is imported from {REPO_ROOT / 'gitopsctl'}, not from this checkout" \
        in proc.stdout
    assert github_path == []


def test_a_pinned_wheel_is_installed_into_a_virtualenv_of_the_job(tmp_path, runner: RunnerHost):
    proc, github_env, github_path = _setup(tmp_path, _homelab(tmp_path),
                                           {**runner.env(), **runner.variables()})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    venv = tmp_path / "runner-temp" / "gitopsctl-venv"
    assert f"pip install {runner.requirement}" in proc.stdout
    assert github_path == [str(venv / "bin")]
    assert github_env == ["GITOPSCTL_DEFAULT_TEST_COMMAND=gitopsctl check"]
    site = next((venv / "lib").glob("python3.*/site-packages"))
    assert f"from {site / 'gitopsctl'}, run by {venv / 'bin' / 'python'}" in proc.stdout
    # the wheel's files, not a link back to a checkout
    assert (site / "gitopsctl" / "summary.py").is_file()
    assert not list(site.glob("__editable__*"))


def test_a_gitopsctl_shadowing_the_installed_one_is_refused(tmp_path, runner: RunnerHost):
    """Something on the runner's PYTHONPATH that answers `import gitopsctl` first would run
    instead of the pin: the set-up says so and stops."""
    shadow = tmp_path / "shadow"
    (shadow / "gitopsctl").mkdir(parents=True)
    (shadow / "gitopsctl" / "__init__.py").write_text("__version__ = 'not the pin'\n")
    env = {**runner.env(), **runner.variables()}
    env["PYTHONPATH"] = f"{shadow}{os.pathsep}{env['PYTHONPATH']}"
    proc, _, github_path = _setup(tmp_path, _homelab(tmp_path), env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (f"::error::gitopsctl is imported from {shadow / 'gitopsctl'}, not from the "
            "virtualenv that GITOPSCTL_INSTALL installed") in proc.stdout
    assert github_path == []
