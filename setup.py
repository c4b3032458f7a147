"""The one build step pyproject.toml cannot say: what the wheel carries from outside gitopsctl/.

`gitopsctl sandbox demo` seeds its lab from this repository's own homelab (clusters/homelab)
and example services (examples/frontend, examples/backend). An installed package has no
checkout beside it, so the build copies them into the package as gitopsctl/data/seed/, and
records the commit it was built from in gitopsctl/data/build.json for `gitopsctl --version`.
Both are written into the build directory only, never into the source tree (.gitignore
names them all the same); an editable install reads the checkout's files instead
(gitopsctl.sandbox.lab.seed.seed_source, gitopsctl.buildinfo).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
# Keep in step with gitopsctl.sandbox.lab.seed.SEED_PATHS (tests/packaging holds them equal).
SEED_PATHS = ("clusters/homelab", "examples/frontend", "examples/backend")
SKIPPED = shutil.ignore_patterns("__pycache__", "*.pyc", ".gitopsctl")


def source_commit(root: Path) -> str | None:
    """HEAD of the git repository whose top is `root`, if it is one (a checkout, or the
    clone pip makes of a git URL); an sdist or a copy of the files has none."""
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True,
                             text=True, timeout=30, stdin=subprocess.DEVNULL)
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != root:
            return None  # not a repository, or files unpacked inside someone else's
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() if head.returncode == 0 else None


class BuildWithSeed(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # the checkout's own files serve an editable install
        data = Path(self.build_lib) / "gitopsctl" / "data"
        seed = data / "seed"
        shutil.rmtree(seed, ignore_errors=True)  # a file deleted since the last build must go
        for rel in SEED_PATHS:
            shutil.copytree(HERE / rel, seed / rel, ignore=SKIPPED)
        (data / "build.json").write_text(json.dumps({"commit": source_commit(HERE)}) + "\n")


setup(cmdclass={"build_py": BuildWithSeed})
