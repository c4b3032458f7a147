"""Rules that ask the real tools: `kubectl kustomize DIR` and `docker compose config`.

Both run offline. Binaries are looked up next to the running Python first (the venv
that installed the `kubernetes` and `vm` extras), then on PATH.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from gitopsctl.checks import Finding
from gitopsctl.executables import find_tool, install_hint
from gitopsctl.errors import Location

TOOL_TIMEOUT = 60.0


def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG",)}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=TOOL_TIMEOUT, check=False)


def kustomize_build(directory: Path, display: str) -> Finding | None:
    kubectl = find_tool("kubectl")
    where = Location(display, 1)
    if kubectl is None:
        return Finding("GOC002", where, "kubectl is not installed; cannot build this kustomization",
                       install_hint("kubectl"))
    try:
        proc = _run([kubectl, "kustomize", str(directory)])
    except subprocess.TimeoutExpired:
        return Finding("GOC002", where, f"kubectl kustomize took longer than {TOOL_TIMEOUT:.0f}s",
                       "does it reference a remote base? check builds offline only")
    if proc.returncode == 0:
        return None
    return Finding("GOC002", where, f"kustomize build failed: {_summary(proc.stderr)}",
                   f"run `kubectl kustomize {display.rsplit('/', 1)[0] or '.'}` to see the full "
                   "error; check resources:, patches and names")


def compose_config(path: Path, display: str) -> Finding | None:
    compose = find_tool("docker-compose")
    argv = [compose, "-f", str(path), "config", "-q"] if compose else None
    if argv is None:
        docker = find_tool("docker")
        argv = [docker, "compose", "-f", str(path), "config", "-q"] if docker else None
    where = Location(display, 1)
    if argv is None:
        return Finding("GOC008", where, "docker compose is not installed; cannot validate",
                       install_hint("docker-compose"))
    try:
        proc = _run(argv, cwd=path.parent)
    except subprocess.TimeoutExpired:
        return Finding("GOC008", where, "docker compose config timed out",
                       "validate it by hand with `docker compose config`")
    if proc.returncode == 0:
        return None
    return Finding("GOC008", where, f"compose file is invalid: {_summary(proc.stderr)}",
                   f"run `docker compose -f {display} config` for the full message")


def _summary(stderr: str) -> str:
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    text = " ".join(lines[-3:]) if lines else "no error output"
    return text[:400]
