"""`gitopsctl --version` in this checkout (an editable install): git's HEAD, not a record."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_a_checkout_reports_its_head_and_the_installed_version():
    from gitopsctl import __version__, buildinfo

    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                          check=True, timeout=60).stdout.strip()
    assert not (REPO_ROOT / "gitopsctl/data/build.json").exists()  # setup.py writes it into builds only
    assert buildinfo.version() == __version__
    assert buildinfo.commit() == head
    shown = subprocess.run([sys.executable, "-m", "gitopsctl", "--version"], cwd="/", capture_output=True,
                           text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert shown.returncode == 0 and shown.stdout.strip() == f"gitopsctl {__version__} (commit {head[:7]})"


def test_the_sandbox_seed_of_a_checkout_is_the_checkout(tmp_path):
    from gitopsctl.sandbox.lab.seed import SEED_PATHS, seed_source

    assert seed_source(tmp_path) == REPO_ROOT
    assert all((REPO_ROOT / rel).is_dir() for rel in SEED_PATHS) and list(tmp_path.iterdir()) == []
