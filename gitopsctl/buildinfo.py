"""What gitopsctl is: its version and the git commit it was built from (`gitopsctl --version`).

An installed wheel knows its commit from gitopsctl/data/build.json, which setup.py writes
while building (pip's clone of a git URL is a checkout too); a checkout or an editable
install asks git for its HEAD, so the answer follows the working copy. Imported only by
--version: the rest of the CLI never pays for it.
"""

from __future__ import annotations

import json
from pathlib import Path

DISTRIBUTION = "gitopsctl"


def version() -> str:
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # imported from a source tree nobody installed
        from gitopsctl import __version__

        return __version__


def commit() -> str | None:
    """The full SHA this code was built from, or None when nobody can tell (a copy of the
    files, an sdist, a checkout without git on PATH)."""
    recorded = _recorded()
    if recorded is not None:
        return recorded or None
    return _checkout_head()


def describe() -> str:
    """`gitopsctl 0.1.0 (commit abc1234)`, the line --version prints."""
    sha = commit()
    return f"gitopsctl {version()}" + (f" (commit {sha[:7]})" if sha else "")


def _recorded() -> str | None:
    """The commit build.json names ("" when the build had none); None without build.json."""
    path = Path(__file__).resolve().parent / "data" / "build.json"
    try:
        return str(json.loads(path.read_text()).get("commit") or "")
    except (OSError, ValueError, AttributeError):
        return None


def _checkout_head() -> str | None:
    from gitopsctl.errors import GitopsctlError

    top = Path(__file__).resolve().parents[1]
    if not (top / ".git").exists() or not (top / "pyproject.toml").is_file():
        return None  # installed without build.json, or vendored into another repository
    from gitopsctl.repo.revs import find_commit

    try:
        return find_commit(top, "HEAD")  # None before the first commit
    except GitopsctlError:  # git missing, or a broken repository: --version still answers
        return None
