"""A real git remote on disk (bare repository) and a working clone seeded with files.

The bare remote refuses non-fast-forward pushes, as a protected main branch does, so
a test notices if anything tries to rewrite history.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

AUTHOR = ("gitopsctl-test", "test@gitopsctl.invalid")


def git(cwd: Path, *args: str, check: bool = True) -> str:
    """Run git with an argument list; returns stdout stripped. Raises CalledProcessError."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": AUTHOR[0], "GIT_AUTHOR_EMAIL": AUTHOR[1],
           "GIT_COMMITTER_NAME": AUTHOR[0], "GIT_COMMITTER_EMAIL": AUTHOR[1]}
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          check=False, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        error = subprocess.CalledProcessError(proc.returncode, ["git", *args], proc.stdout,
                                              proc.stderr)
        error.add_note(f"git {args[0]} said: {proc.stderr.strip()}")
        raise error
    return proc.stdout.strip()


@dataclass
class GitRemote:
    bare: Path     # the "server" side; its path is the remote URL
    work: Path     # a clone with `origin` pointing at `bare`, on `branch`
    branch: str = "main"

    @property
    def url(self) -> str:
        return str(self.bare)

    def write(self, files: Mapping[str, str | bytes]) -> None:
        """Write files (repo-relative path -> content) into the working clone."""
        for rel, content in files.items():
            path = self.work / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)

    def commit_all(self, message: str) -> str:
        """Stage everything in the clone, commit, return the new HEAD sha."""
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def push(self) -> None:
        git(self.work, "push", "-q", "origin", f"HEAD:refs/heads/{self.branch}")

    def head(self) -> str:
        return git(self.work, "rev-parse", "HEAD")

    def remote_head(self) -> str:
        """The branch tip as the remote has it (what Flux or the VM would fetch)."""
        return git(self.bare, "rev-parse", f"refs/heads/{self.branch}")

    def clone(self, dest: Path) -> Path:
        """Another working clone of the remote (a second pusher, or the VM's checkout)."""
        git(dest.parent, "clone", "-q", "--branch", self.branch, self.url, str(dest))
        _configure_clone(dest)
        return dest

    def log(self, ref: str | None = None, fmt: str = "%H %s") -> list[str]:
        out = git(self.bare, "log", f"--format={fmt}", ref or f"refs/heads/{self.branch}")
        return out.splitlines() if out else []


def make_git_remote(root: Path, seed: Mapping[str, Path] | Iterable[Path] | None = None, *,
                    files: Mapping[str, str | bytes] | None = None, branch: str = "main",
                    message: str = "initial commit") -> GitRemote:
    """Create root/remote.git and root/work, seed the clone, commit and push once.

    `seed` maps repo-relative destinations to source files or directories (an iterable
    of directories copies each under its own name); `files` adds literal content.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    bare = root / "remote.git"
    work = root / "work"
    git(root, "init", "-q", "--bare", f"--initial-branch={branch}", str(bare))
    git(bare, "config", "receive.denyNonFastForwards", "true")
    git(bare, "config", "receive.denyDeletes", "true")
    git(root, "init", "-q", f"--initial-branch={branch}", str(work))
    _configure_clone(work)
    git(work, "remote", "add", "origin", str(bare))
    remote = GitRemote(bare=bare, work=work, branch=branch)
    if seed is not None:
        items = seed.items() if isinstance(seed, Mapping) else ((Path(p).name, p) for p in seed)
        for dest, src in items:
            _copy(Path(src), work / dest)
    if files:
        remote.write(files)
    remote.commit_all(message)
    remote.push()
    git(work, "branch", "-q", f"--set-upstream-to=origin/{branch}")
    return remote


def _configure_clone(work: Path) -> None:
    git(work, "config", "user.name", AUTHOR[0])
    git(work, "config", "user.email", AUTHOR[1])
    git(work, "config", "commit.gpgsign", "false")


def _copy(src: Path, dest: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dest, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".git", "__pycache__", ".gitopsctl"))
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)
