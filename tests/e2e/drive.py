"""Driving the real CLI against the lab, and reading back what git and the services say."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from gitopsctl import repo as gitrepo
from gitopsctl.sandbox.lab.gitremote import git

SERVICES = ("frontend", "backend")


def run_json(lab, *args: str, cwd: Path | None = None, env: dict | None = None):
    result = lab.gitopsctl("-o", "json", *args, cwd=cwd, env=env)
    try:
        doc = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"gitopsctl {' '.join(args)} printed no JSON document (exit "
                             f"{result.returncode}):\nstdout: {result.stdout}\n"
                             f"stderr: {result.stderr}") from None
    return result.returncode, doc, result.stderr


def build(lab, sha: str) -> None:
    code, _, err = run_json(lab, "build", "--source", sha)
    assert code == 0, err


def records(lab, source: str | None = None):
    log = gitrepo.deploy_log(lab.remote.bare, "refs/heads/main")
    return [r for r in log if source is None or r.source == source]


def on_remote(lab, source: str, kind: str, service: str | None = None) -> bool:
    return any(r.kind == kind and (service is None or r.service == service)
               for r in records(lab, source))


def assert_once(lab, source: str, expected: list[tuple[str, str | None]]) -> None:
    """Exactly these (kind, service) records for `source` on the remote, each once."""
    got = sorted((r.kind, r.service or "") for r in records(lab, source))
    assert got == sorted((k, s or "") for k, s in expected), got


def served(lab) -> dict[str, str | None]:
    return {s: lab.served_version(s) for s in SERVICES}


def remote_message(lab, commit: str) -> str:
    return gitrepo.open_repo(lab.remote.bare).commit(commit).message


def fresh_clone(lab, dest: Path, *, depth: int | None = None) -> Path:
    args = ["clone", "-q"]
    if depth:
        args += ["--depth", str(depth), f"file://{lab.remote.bare}"]
    else:
        args.append(str(lab.remote.bare))
    git(dest.parent, *args, str(dest))
    return dest


@contextmanager
def refusing(lab, subject_prefix: str) -> Iterator[None]:
    """While inside: a pre-receive hook refuses any pushed commit whose subject starts so."""
    hook = Path(lab.remote.bare) / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\n"
        "while read old new ref; do\n"
        f"  if git log --format=%s \"$old..$new\" 2>/dev/null | cut -c1-{len(subject_prefix)} "
        f"| grep -qxF '{subject_prefix}'; then\n"
        f"    echo 'policy: {subject_prefix} commits are not accepted here' >&2; exit 1\n"
        "  fi\n"
        "done\n")
    hook.chmod(0o755)
    try:
        yield
    finally:
        hook.unlink()


class Background:
    """A gitopsctl command in the background, killed at a failpoint or a condition."""

    def __init__(self, lab, *args: str, cwd: Path | None = None, failpoint: str | None = None):
        stamp = time.monotonic_ns()
        self.log = lab.workdir / f"bg-{stamp}.log"
        self.marker = lab.workdir / f"bg-{stamp}.failpoint"
        env = lab.ci_env()
        if failpoint:
            env.update(GITOPSCTL_FAILPOINTS=failpoint, GITOPSCTL_FAILPOINT_FILE=str(self.marker))
        self.out = open(self.log, "w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "gitopsctl", "-o", "json", *args],
                                     cwd=cwd or lab.ci, env=env, stdout=self.out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)

    def kill_when(self, condition, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                self.kill()
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"ended (exit {self.proc.returncode}) before the kill point:\n"
                                     + self.text())
            time.sleep(0.05)
        self.kill()
        raise AssertionError("the kill point never came:\n" + self.text())

    def kill_at_failpoint(self, timeout: float = 180) -> None:
        self.kill_when(lambda: self.marker.exists(), timeout)

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def wait(self, timeout: float = 300) -> int:
        return self.proc.wait(timeout)

    def text(self) -> str:
        self.out.seek(0)
        return self.out.read()[-6000:]

    def document(self) -> dict:
        """The JSON document printed (stdout and stderr share the log file)."""
        self.out.seek(0)
        full = self.out.read()
        return json.loads(full if full.startswith("{") else full[full.index("\n{\n") + 1:])
