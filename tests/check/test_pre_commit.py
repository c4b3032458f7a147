"""The hooks in .pre-commit-hooks.yaml, run by the real pre-commit framework, offline.

The hooks repository is a throwaway git repository holding this working tree's
.pre-commit-hooks.yaml (pre-commit only reads committed files), and the project using
it is a copy of this repository's clusters/ and gitopsctl.yaml.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gitopsctl.sandbox.lab.gitremote import git

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


@pytest.fixture
def hooks_repo(tmp_path) -> tuple[Path, str]:
    repo = tmp_path / "hooks"
    repo.mkdir()
    git(repo, "init", "-q", "--initial-branch=main")
    shutil.copy(REPO_ROOT / ".pre-commit-hooks.yaml", repo / ".pre-commit-hooks.yaml")
    git(repo, "add", ".pre-commit-hooks.yaml")
    git(repo, "commit", "-q", "-m", "hooks")
    return repo, git(repo, "rev-parse", "HEAD")


@pytest.fixture
def project(tmp_path, hooks_repo) -> Path:
    repo_path, rev = hooks_repo
    project = tmp_path / "homelab"
    project.mkdir()
    git(project, "init", "-q", "--initial-branch=main")
    shutil.copytree(REPO_ROOT / "clusters", project / "clusters")
    shutil.copy(REPO_ROOT / "gitopsctl.yaml", project / "gitopsctl.yaml")
    (project / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {repo_path}\n    rev: {rev}\n    hooks:\n"
        "      - id: gitopsctl-check\n      - id: gitopsctl-bump-dry-run\n")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "homelab")
    return project


def pre_commit(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITOPSCTL_")}
    env.update(PRE_COMMIT_HOME=str(project.parent / "pre-commit-home"),
               PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
               PIP_NO_INDEX="1", NO_COLOR="1")  # nothing may be fetched
    return subprocess.run([str(VENV_BIN / "pre-commit"), *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)


def test_both_hooks_pass_on_a_clean_repository(project):
    result = pre_commit(project, "run", "--all-files")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "gitopsctl check" in result.stdout and "gitopsctl bump --dry-run" in result.stdout
    assert result.stdout.count("Passed") == 2
    assert git(project, "status", "--porcelain") == ""  # the dry run wrote nothing


def test_check_hook_blocks_a_plaintext_secret_at_commit_time(project):
    git(project, "config", "user.name", "dev")
    git(project, "config", "user.email", "dev@homelab.lan")
    assert pre_commit(project, "install").returncode == 0
    secret = project / "clusters/homelab/apps/frontend/secret.yaml"
    secret.write_text("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n"
                      "stringData:\n  password: hunter2\n")
    git(project, "add", str(secret))
    env = {**os.environ, "PRE_COMMIT_HOME": str(project.parent / "pre-commit-home"),
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    commit = subprocess.run(["git", "commit", "-m", "add secret"], cwd=project, env=env,
                            capture_output=True, text=True, timeout=300)
    output = commit.stdout + commit.stderr
    assert commit.returncode != 0, output
    assert "clusters/homelab/apps/frontend/secret.yaml:2:7: GOC003 error" in output
    assert "hunter2" not in output
    assert git(project, "rev-list", "--count", "HEAD") == "1"


def test_bump_dry_run_hook_fails_on_a_broken_marked_file(project):
    deployment = project / "clusters/homelab/apps/frontend/deployment.yaml"
    deployment.write_text(deployment.read_text() + "  broken: [\n")
    result = pre_commit(project, "run", "gitopsctl-bump-dry-run", "--all-files")
    assert result.returncode != 0
    assert "clusters/homelab/apps/frontend/deployment.yaml:" in result.stdout + result.stderr
