"""The one way gitopsctl runs git: an argument list, a deadline, and nothing left behind.

Every git process starts in its own process group and is killed with the whole group
when its deadline passes or its caller fails, because git's remote helpers
(git-remote-http, ssh) hold its pipes open and would otherwise outlive it. GitPython
is not used to run commands: its `kill_after_timeout` kills git alone, not the helper
that is the one waiting on a silent remote, and one runner keeps one set of rules.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

from gitopsctl.errors import ExternalError, InputError

# A remote that accepts the connection and never answers (a wedged Gitea, a half-open
# connection) would otherwise hold a pipeline forever; git has no deadline of its own.
NETWORK_TIMEOUT = 120.0
# Local commands finish in milliseconds; a minute means a lock held by another git or
# a filesystem that stopped answering.
LOCAL_TIMEOUT = 60.0
NETWORK_COMMANDS = ("fetch", "push", "ls-remote", "clone", "pull")


def git_env(author=None) -> dict[str, str]:
    """What every git child gets on top of the caller's environment."""
    env = {"GIT_TERMINAL_PROMPT": "0", "GIT_EDITOR": "true", "GIT_MERGE_AUTOEDIT": "no",
           # git's messages are matched below ("non-fast-forward", "not a git repository")
           "LC_ALL": "C", "LANGUAGE": "C"}
    if author is not None:
        env.update(GIT_AUTHOR_NAME=author.name, GIT_AUTHOR_EMAIL=author.email,
                   GIT_COMMITTER_NAME=author.name, GIT_COMMITTER_EMAIL=author.email)
    return env


def run(root: Path | str, args: Sequence[str], *, data: bytes | None = None,
        env: Mapping[str, str] | None = None, timeout: float = LOCAL_TIMEOUT,
        ok_codes: tuple[int, ...] = (0,), author=None,
        meanwhile: Callable[[], None] | None = None) -> subprocess.CompletedProcess:
    """`git ARGS` in the repository `root` (bytes out); ExternalError on another exit code.

    `root` itself must be the repository (a work tree's top or a bare repository): git
    does not look in its parents, so a wrong --repo fails here instead of committing in
    whatever repository happens to contain it. `meanwhile` runs on this thread while git
    works, so slow in-process work (importing the target clients) overlaps with it
    without a second thread: two threads importing one package can see it half-loaded.
    """
    command = ["git", *args]
    where = Path(root).resolve()
    deadline = time.monotonic() + timeout
    child_env = {**os.environ, **git_env(author), **(env or {}),
                 "GIT_CEILING_DIRECTORIES": str(where.parent)}
    try:
        proc = subprocess.Popen(command, cwd=str(where),
                                stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env,
                                process_group=0)  # so a stop reaches git's remote helper too
    except (FileNotFoundError, NotADirectoryError) as exc:
        if not where.is_dir():
            raise _not_a_repository(root) from None
        raise ExternalError("git is not installed (no `git` on PATH)",
                            hint="install git (Debian: apt-get install git)") from exc
    try:
        if meanwhile is not None:
            meanwhile()
        stdout, stderr = proc.communicate(data, timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise too_slow(args[0], timeout) from None
    finally:
        if proc.returncode is None:
            _kill_group(proc)
    if proc.returncode != 0 and b"not a git repository" in stderr:
        raise _not_a_repository(root)  # even where a non-zero exit is an answer
    if proc.returncode not in ok_codes:
        text = stderr.decode("utf-8", "replace").strip()
        raise ExternalError(f"git {args[0]} failed: {text or f'exit {proc.returncode}'}",
                            details={"command": command[:4], "exit": proc.returncode})
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def text(root: Path | str, args: Sequence[str], **kwargs) -> str:
    """`run`, stdout decoded and stripped."""
    return run(root, args, **kwargs).stdout.decode("utf-8", "surrogateescape").strip()


def succeeds(root: Path | str, args: Sequence[str], **kwargs) -> bool:
    """True when git exits 0, False when it exits 1 or 128 (a question answered "no")."""
    return run(root, args, ok_codes=(0, 1, 128), **kwargs).returncode == 0


def too_slow(command: str, timeout: float) -> ExternalError:
    if command in NETWORK_COMMANDS:
        hint = ("check that the git remote (git.remote in gitopsctl.yaml) is reachable and "
                "answering, then run again")
    else:
        hint = "another git may hold the repository's lock (.git/index.lock); run again"
    return ExternalError(f"git {command} did not finish within {timeout:g} s; it was stopped",
                         hint=hint)


def _not_a_repository(root: Path | str) -> InputError:
    return InputError(f"{root} is not a git repository",
                      hint="run gitopsctl at the top of the homelab repository, or pass --repo")


def _kill_group(proc: subprocess.Popen) -> None:
    """Stop git and every helper it started; they hold its pipes open until they exit."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()
