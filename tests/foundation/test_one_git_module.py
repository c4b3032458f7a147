"""One git module, one atomic write: read the package's own source and hold it to that.

gitopsctl/repo/ is the only place git runs (each call with a deadline that kills git's
whole process group) and gitopsctl/fsutil.py the only place a file is renamed into
place. The sandbox's lab is exempt: it is the test harness standing in for Gitea and
for Flux's source-controller, which run git themselves, and nothing in the product
imports it. The sandbox's story may drive its own lab's helpers; the product may not.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "gitopsctl"
GIT_MODULE = "gitopsctl/repo/"
ATOMIC_WRITE = "gitopsctl/fsutil.py"
LAB = "gitopsctl/sandbox/lab/"
SANDBOX = "gitopsctl/sandbox/"
# Still running git their own way while their owners move them to gitopsctl.repo
# (issue 14 point 2); each entry goes when its module no longer needs it.
PENDING_GIT: dict[str, str] = {}


@functools.lru_cache(maxsize=1)
def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).as_posix()
        out[rel] = ast.parse(path.read_text(), filename=rel)
    return out


def _starts_with_git(node: ast.AST) -> bool:
    """["git", ...] / ("git", *args) / "git log ..." : a git command line."""
    if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
        first = node.elts[0]
        rest = node.elts[1:2]
        return (isinstance(first, ast.Constant) and first.value == "git"
                and all(isinstance(e, ast.Starred) or isinstance(e, ast.Constant)
                        and isinstance(e.value, str) for e in rest))
    return isinstance(node, ast.Constant) and isinstance(node.value, str) \
        and node.value.startswith("git ")


def git_runs(tree: ast.Module) -> list[str]:
    """Where a module starts git: a git argv literal, GitPython, or the lab's git helper."""
    found = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, (ast.List, ast.Tuple)) and _starts_with_git(node):
            found.append(f"{line}: a git command line")
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and _starts_with_git(node.args[0]) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("run", "Popen", "call", "check_call", "check_output",
                                       "system", "getoutput"):
            found.append(f"{line}: a git shell command")
        elif isinstance(node, ast.Import) and any(a.name == "git" or a.name.startswith("git.")
                                                  for a in node.names):
            found.append(f"{line}: import git (GitPython)")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and (node.module == "git" or node.module.startswith("git.")):
            found.append(f"{line}: from git import (GitPython)")
        elif isinstance(node, ast.ImportFrom) and node.module == "gitopsctl.sandbox.lab.gitremote":
            found.append(f"{line}: the lab's git helper")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr == "open_repo":
            found.append(f"{line}: a GitPython Repo (open_repo)")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "git":
            found.append(f"{line}: GitPython's <repo>.git.{node.func.attr}()")
    return found


def renames(tree: ast.Module) -> list[str]:
    """Where a module renames a file into place itself (os.replace / os.rename)."""
    return [f"{node.lineno}: os.{node.func.attr}" for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("replace", "rename") and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "os"]


def _git_allowed(rel: str, finding: str) -> bool:
    if rel.startswith((GIT_MODULE, LAB)):
        return True
    # the story reads its own lab's remote with the lab's helper
    return rel.startswith(SANDBOX) and finding.endswith("the lab's git helper")


def test_only_the_repo_package_runs_git():
    offenders = {rel: found for rel, tree in _modules().items()
                 if (found := [f for f in git_runs(tree) if not _git_allowed(rel, f)])
                 and rel not in PENDING_GIT}
    assert offenders == {}, ("run git through gitopsctl.repo (add a small named function there "
                             f"if none fits): {offenders}")


def test_every_pending_module_still_needs_its_exemption():
    modules = _modules()
    stale = [rel for rel in PENDING_GIT if rel not in modules or not git_runs(modules[rel])]
    assert stale == [], f"no longer running git its own way: drop {stale} from PENDING_GIT"


def test_only_fsutil_renames_files_into_place():
    offenders = {rel: found for rel, tree in _modules().items()
                 if (found := renames(tree)) and rel != ATOMIC_WRITE and not rel.startswith(LAB)}
    assert offenders == {}, f"write files with gitopsctl.fsutil.write_atomic: {offenders}"


def test_the_repo_package_starts_git_in_one_place_only():
    starts = {rel: found for rel, tree in _modules().items() if rel.startswith(GIT_MODULE)
              and (found := [f for f in git_runs(tree) if "command line" in f])}
    assert list(starts) == ["gitopsctl/repo/runner.py"], starts


def test_the_detectors_see_what_they_look_for():
    # the checks above are only as good as these: each shape once, and the near misses
    sample = ast.parse(
        "import subprocess, os\n"
        "subprocess.run(['git', 'status'])\n"
        "subprocess.Popen(('git', *args))\n"
        "subprocess.run('git log -1', shell=True)\n"
        "import git\n"
        "from git import Repo\n"
        "from gitopsctl.sandbox.lab.gitremote import git\n"
        "gitrepo.open_repo(root)\n"
        "repo.git.ls_tree('-r')\n"
        "os.replace(a, b)\n"
        "os.rename(a, b)\n")
    assert len(git_runs(sample)) == 8
    assert len(renames(sample)) == 2
    near_misses = ast.parse(
        "('git', ('/usr/bin',))\n"           # a table of tools and where to find them
        "config.git.remote, config.git.branch, cfg.git.skip_marker\n"
        "text.replace('a', 'b')\n"
        "from gitopsctl import repo as gitrepo\n"
        "shutil.which('git')\n")
    assert git_runs(near_misses) == [] and renames(near_misses) == []


# ---------------------------------------------------------------- the one atomic write, on a real filesystem


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_write_atomic_modes_text_and_bytes(tmp_path):
    import os

    from gitopsctl.fsutil import write_atomic

    secret = tmp_path / "env"
    write_atomic(secret, b"TOKEN=1\n", 0o600)
    assert secret.read_bytes() == b"TOKEN=1\n" and secret.stat().st_mode & 0o777 == 0o600
    script = tmp_path / "run.sh"
    script.write_text("old\n")
    script.chmod(0o751)
    write_atomic(script, "new ✓\n")
    assert script.read_text() == "new ✓\n" and script.stat().st_mode & 0o777 == 0o751
    fresh = tmp_path / "fresh.txt"
    umask = os.umask(0o027)
    try:
        write_atomic(fresh, "x")
    finally:
        os.umask(umask)
    assert fresh.stat().st_mode & 0o777 == 0o640
    assert _leftovers(tmp_path) == []


def test_write_atomic_refuses_and_leaves_everything_byte_identical(tmp_path):
    import os

    import pytest

    from gitopsctl.errors import InputError
    from gitopsctl.fsutil import write_atomic

    edited = tmp_path / "kustomization.yaml"
    edited.write_text("theirs\n")
    with pytest.raises(InputError, match="changed while gitopsctl was editing it"):
        write_atomic(edited, "ours\n", expected="what we read\n")
    real = tmp_path / "real.yaml"
    real.write_text("real\n")
    link = tmp_path / "link.yaml"
    link.symlink_to(real)
    with pytest.raises(InputError, match="symbolic link"):
        write_atomic(link, "through the link\n")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        write_atomic(fifo, "x")  # refused at once: opening it did not wait for a writer

    def swap_in_a_link() -> None:  # someone replaces the file between our write and rename
        edited.unlink()
        edited.symlink_to(real)

    with pytest.raises(InputError, match="became a symbolic link"):
        write_atomic(edited, "ours\n", before_replace=swap_in_a_link)
    assert real.read_text() == "real\n" and link.is_symlink() and edited.is_symlink()
    assert _leftovers(tmp_path) == []
