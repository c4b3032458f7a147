"""A runner host for a homelab repository that installs gitopsctl with pip, offline.

What a real runner host gets from an index, this one gets from this machine:

    wheel     gitopsctl built from this checkout with pip (`pip wheel --no-build-isolation`,
              from a copy of the files git sees, so the checkout gets no build/ directory);
              the workflow installs it by its GITOPSCTL_INSTALL requirement
    site      gitopsctl's dependencies: .venv's site-packages without gitopsctl itself, pip
              or setuptools, on the runner's PYTHONPATH. pip counts what is on sys.path as
              installed, so `pip install` with PIP_NO_INDEX needs nothing from an index; the
              set-up step then checks that gitopsctl itself is imported from its virtualenv.
    tools     kubectl and docker-compose, as a runner host would have them on PATH
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from .actrun import REPO_ROOT

_NOT_DEPENDENCIES = ("gitopsctl", "__editable__", "pip", "setuptools", "_distutils_hack",
                     "pkg_resources", "distutils-precedence", "__pycache__")
_TOOLS = ("kubectl", "docker-compose")
_BUILD_DEADLINE = 180.0
RUNNER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class RunnerHost:
    wheel: Path
    site: Path
    tools: Path

    @property
    def requirement(self) -> str:
        # a PEP 508 direct reference, spaces and an extra included, as a user would pin it
        return f"gitopsctl[kubernetes] @ {self.wheel.as_uri()}"

    def variables(self) -> dict[str, str]:
        # the interpreter .venv was made from: the dependencies in `site` were built for it
        return {"GITOPSCTL_INSTALL": self.requirement,
                "GITOPSCTL_CI_PYTHON": getattr(sys, "_base_executable", sys.executable)}

    def env(self) -> dict[str, str]:
        return {"PATH": f"{self.tools}:{RUNNER_PATH}", "PYTHONPATH": str(self.site),
                "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def runner_host(root: Path) -> RunnerHost:
    return RunnerHost(wheel=_build_wheel(root / "wheel"), site=_dependency_site(root / "site"),
                      tools=_tools(root / "tools"))


def _build_wheel(root: Path) -> Path:
    src = root / "src"
    src.mkdir(parents=True)
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO_ROOT, capture_output=True, check=True, timeout=60,
                            stdin=subprocess.DEVNULL).stdout.decode().split("\0")
    for rel in filter(None, listed):
        source = REPO_ROOT / rel
        if source.is_file() and not rel.startswith("tests/"):
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes(source.read_bytes())
    dist = root / "dist"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "--no-index", "--disable-pip-version-check", "-q", "-w", str(dist),
                           str(src)], capture_output=True, text=True, timeout=_BUILD_DEADLINE,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = dist.glob("gitopsctl-*.whl")
    return wheel


def _dependency_site(site: Path) -> Path:
    site.mkdir(parents=True)
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if entry.name.startswith(_NOT_DEPENDENCIES) or entry.suffix == ".pth":
            continue
        (site / entry.name).symlink_to(entry)
    return site


def _tools(tools: Path) -> Path:
    tools.mkdir(parents=True)
    for name in _TOOLS:
        binary = Path(sys.executable).parent / name
        assert binary.is_file(), f"{binary} is missing: install the test extras"
        (tools / name).symlink_to(binary)
    return tools
