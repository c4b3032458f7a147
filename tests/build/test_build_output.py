"""What people see: per-layer push progress on a terminal, the text summary, .dockerignore."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

from rich.console import Console

from gitopsctl.commands.build import build
from gitopsctl.console import Reporter


def test_terminal_push_shows_per_layer_progress(homelab):
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120, highlight=False, soft_wrap=True)
    reporter = Reporter(color=False, _console=console)
    ctx = homelab.context()
    ctx.reporter = reporter
    result = build(ctx)
    out = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buf.getvalue())
    for name in ("frontend", "backend"):
        assert f"{name}: built" in out
        assert f"{name}: {result.images[name].reference}" in out
    # the live display names layers while they push (it is cleared when done)
    assert any(status in out for status in ("Pushing", "Pushed", "Layer already exists",
                                            "Preparing", "Waiting"))


def test_dockerignore_is_honoured(homelab, docker_client):
    homelab.commit({"examples/frontend/.dockerignore": "# not for the image\nwww/notes-*.txt\n",
                    "examples/frontend/www/notes-private.txt": "internal\n"})
    result = build(homelab.context(), services=["frontend"], push=False)
    out = docker_client.containers.run(result.images["frontend"].image_id,
                                       ["ls", "/www"], remove=True, network_mode="host")
    assert "index.html" in out.decode()
    assert "notes-private.txt" not in out.decode()


def test_text_output_lists_references(homelab):
    proc = subprocess.run([sys.executable, "-m", "gitopsctl", "--repo", str(homelab.root),
                           "--no-color", "build", "--service", "backend"],
                          env={**os.environ}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "1 image(s) built and pushed" in proc.stdout
    assert f"{homelab.registry_url}/{homelab.project}/backend:main-" in proc.stdout
    assert "@sha256:" in proc.stdout
    assert "record:" in proc.stdout
