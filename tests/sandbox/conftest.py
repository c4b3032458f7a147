"""Helpers for the sandbox tests: run the real CLI as a subprocess, and look for leftovers.

Each test gives the CLI its own HOME and XDG_STATE_HOME, so the "last sandbox" pointer
`sandbox up` records never lands in a path shared with other sessions on this machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def cli_env(tmp_path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITOPSCTL_")}
    env.update({"HOME": str(home), "XDG_STATE_HOME": str(home / "state"), "NO_COLOR": "1"})
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 60,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gitopsctl", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def processes_naming(path: Path) -> list[str]:
    """Command lines of live processes that mention path (what the lab started names its dir)."""
    found = []
    needle = str(path) + "/"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if needle in cmd and state != "Z":
            found.append(f"{entry.name}: {cmd}")
    return found


def lab_containers_and_images(client, checked: dict) -> list[str]:
    found = [f"container {c.name}" for label in checked.get("labels", [])
             for c in client.containers.list(all=True, filters={"label": label})]
    prefix = checked.get("image_prefix")
    if prefix:
        found += [f"image {t}" for image in client.images.list() for t in image.tags if t.startswith(prefix)]
    return found
