"""gitopsctl build: one source commit -> frontend and backend images, pushed, digests known.

1. Resolve the source commit and check every service's context and Dockerfile exist in
   it (input errors, exit 2, before anything is built).
2. Check the registry answers and accepts our credentials (bounded retries).
3. Build all services in parallel with the Docker SDK from the commit's own tree
   (`git archive`), so a dirty working tree never leaks into an image; labels and the
   SOURCE_SHA build arg name the commit.
4. Tag `<repo>:<sha7>` and the sortable tag, push both images in parallel with per-layer
   progress, then read each manifest digest back through the registry's v2 API.
5. Only when every image is pushed and its digest read back is the build record written.
   If any service fails, nothing is recorded and the command fails.
"""

from __future__ import annotations

import collections
import io
import re
import subprocess
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from gitopsctl.errors import ExternalError, GitopsctlError, InputError, Location

BUILD_DEADLINE = 30 * 60.0     # seconds for one image build
PUSH_DEADLINE = 30 * 60.0      # seconds for pushing one image (all its tags)
PUSH_ATTEMPTS = 3              # bounded retries for a push that fails on the network
DOCKER_SOCKET_TIMEOUT = 600    # a build step may print nothing for a while
LOG_TAIL = 15                  # build output lines shown with a failure

_STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_NONZERO_RE = re.compile(r"returned a non-zero code: (\d+)")
_PARSE_LINE_RE = re.compile(r"(?:dockerfile parse error )?line (\d+)", re.IGNORECASE)
_AUTH_WORDS = ("unauthorized", "authentication required", "denied", "forbidden", "401", "403")
_DISK_WORDS = ("no space left on device", "disk quota exceeded")


# ---------------------------------------------------------------- results


@dataclass
class ServiceBuild:
    service: str
    repository: str
    tags: list[str]
    context: str
    image_id: str = ""
    digest: str = ""
    build_seconds: float = 0.0
    push_seconds: float = 0.0
    steps: int = 0
    cached_steps: int = 0

    @property
    def reference(self) -> str:
        """repo:sortable-tag@digest, what bump writes; without a digest when not pushed."""
        ref = f"{self.repository}:{self.tags[-1]}"
        return f"{ref}@{self.digest}" if self.digest else ref

    def to_dict(self) -> dict:
        return {"repository": self.repository, "tags": self.tags, "image_id": self.image_id,
                "digest": self.digest or None, "reference": self.reference,
                "context": self.context, "build_seconds": round(self.build_seconds, 3),
                "push_seconds": round(self.push_seconds, 3), "steps": self.steps,
                "cached_steps": self.cached_steps}


@dataclass
class BuildResult:
    source: str
    pushed: bool
    images: dict[str, ServiceBuild]
    record: str | None = None
    elapsed: float = 0.0
    exit_code: int = 0

    def to_dict(self) -> dict:
        return {"source": self.source, "pushed": self.pushed, "record": self.record,
                "elapsed_seconds": round(self.elapsed, 3),
                "images": {name: b.to_dict() for name, b in self.images.items()}}

    def render_text(self, console: Any) -> None:
        from rich.markup import escape

        verb = "built and pushed" if self.pushed else "built (not pushed)"
        console.print(f"{self.source[:7]}: {len(self.images)} image(s) {verb} "
                      f"in {self.elapsed:.1f}s")
        for name, b in self.images.items():
            cache = f", {b.cached_steps}/{b.steps} steps cached" if b.steps else ""
            console.print(f"  {escape(name)}: {escape(b.reference)}")
            console.print(f"    build {b.build_seconds:.1f}s{cache}"
                          + (f", push {b.push_seconds:.1f}s" if self.pushed else ""))
        if self.record:
            console.print(f"  record: {escape(self.record)}")


# ---------------------------------------------------------------- plan


@dataclass(frozen=True)
class BuildPlan:
    service: str
    repository: str          # registry-host/project/image
    tags: tuple[str, ...]
    context: str             # repo-relative
    dockerfile: str          # relative to the context
    context_tar: bytes = field(repr=False)


def build(ctx, source: str | None = None, services: list[str] | tuple[str, ...] = ("all",),
          push: bool = True, no_cache: bool = False) -> BuildResult:
    from gitopsctl.buildrecord import BuildRecord, BuiltImage, write_record
    from gitopsctl.imagetags import image_tags

    started = time.monotonic()
    config = ctx.config
    reporter = ctx.reporter
    names = _select_services(config, services)
    repo_root = Path(config.root or ctx.repo)
    sha = _resolve_source(repo_root, source)
    commit_time = int(_git(repo_root, "show", "-s", "--format=%ct", sha))
    labels = {"org.opencontainers.image.revision": sha,
              "org.opencontainers.image.created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                time.gmtime(commit_time))}
    source_url = _source_url(repo_root, config.git.remote)
    if source_url:
        labels["org.opencontainers.image.source"] = source_url

    plans = []
    for name in names:
        svc = config.service(name)
        refs = image_tags(config, name, sha, commit_time)
        plans.append(BuildPlan(service=name, repository=config.image_repository(name),
                               tags=tuple(r.tag for r in refs), context=svc.context,
                               dockerfile=svc.dockerfile,
                               context_tar=_context_tar(repo_root, config, sha, name, svc)))

    registry = None
    credentials = None
    if push:
        from gitopsctl.registry import RegistryClient

        registry = RegistryClient.for_config(config.registry, ctx.environ)
        credentials = registry.credentials
        reporter.action(f"checking registry {config.registry.host}")
        registry.check()

    _check_engine(ctx.environ)
    reporter.action(f"building {', '.join(names)} for {sha[:7]}"
                    + (" (no cache)" if no_cache else ""))
    results = {p.service: ServiceBuild(service=p.service, repository=p.repository,
                                       tags=list(p.tags), context=p.context) for p in plans}
    secrets = [credentials.password] if credentials else []

    def build_one(plan: BuildPlan) -> None:
        _build_image(ctx, plan, results[plan.service], sha, labels, no_cache, secrets)

    _run_parallel(build_one, plans)

    if push:
        progress = _PushProgress.create(reporter)
        try:
            def push_one(plan: BuildPlan) -> None:
                _push_image(ctx, plan, results[plan.service], credentials, progress, secrets)

            _run_parallel(push_one, plans)
        finally:
            progress.close()
        for plan in plans:
            result = results[plan.service]
            path = plan.repository.split("/", 1)[1]
            for tag in plan.tags:
                digest = registry.manifest_digest(path, tag)
                if result.digest and digest != result.digest:
                    raise ExternalError(
                        f"{plan.service}: the registry reports {digest} for {tag} but the "
                        f"push reported {result.digest}",
                        hint="another build may have pushed the same tag; rebuild")
                result.digest = digest
            reporter.success(f"{plan.service}: {result.reference}")
        registry.close()

    record_path = None
    if push:
        record = BuildRecord(source=sha, images={
            name: BuiltImage(service=name, repository=b.repository, tags=tuple(b.tags),
                             digest=b.digest) for name, b in results.items()})
        record_path = str(write_record(config, record))
    return BuildResult(source=sha, pushed=push, images=results, record=record_path,
                       elapsed=time.monotonic() - started)


def _select_services(config, services) -> list[str]:
    wanted = list(services or ["all"])
    if "all" in wanted:
        return list(config.services)
    out = []
    for name in wanted:
        config.service(name)  # ConfigError naming the known services
        if name not in out:
            out.append(name)
    return out


def _run_parallel(fn: Callable[[Any], None], items: list) -> None:
    """Run fn over items in threads; wait for all, then raise the first failure.

    Waiting for every worker means a failing frontend never leaves a backend push
    running behind our back.
    """
    if len(items) == 1:
        fn(items[0])
        return
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        futures = [pool.submit(fn, item) for item in items]
        errors = [f.exception() for f in futures]
    failures = [e for e in errors if e is not None]
    if failures:
        raise failures[0]


# ---------------------------------------------------------------- git


def _git(repo_root: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=repo_root, capture_output=True,
                          stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        raise ExternalError(f"git {args[0]} failed: "
                            f"{proc.stderr.decode(errors='replace').strip()[:300]}")
    return proc.stdout.decode(errors="replace").strip()


def _resolve_source(repo_root: Path, source: str | None) -> str:
    if source is not None and not re.match(r"^[0-9a-fA-F]{4,40}$", source):
        raise InputError(f"--source {source!r} is not a commit SHA",
                         hint="pass 4 to 40 hex digits, e.g. `--source $(git rev-parse HEAD)`")
    rev = source.lower() if source else "HEAD"
    proc = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                          cwd=repo_root, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        if source is None:
            raise InputError(f"{repo_root} has no commits (or is not a git repository)",
                             hint="commit the app sources first, or pass --repo")
        raise InputError(f"commit {source} is not in {repo_root}",
                         hint="fetch first (`git fetch`), or check the SHA")
    return proc.stdout.strip()


def _source_url(repo_root: Path, remote: str) -> str | None:
    proc = subprocess.run(["git", "remote", "get-url", remote], cwd=repo_root,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    # never put a token from an https://user:token@ URL into an image label
    return re.sub(r"^([a-z+]+://)[^/@]*@", r"\1", proc.stdout.strip())


def _context_tar(repo_root: Path, config, sha: str, name: str, svc) -> bytes:
    """The service's build context as a tar, exactly as committed in `sha`."""
    context = svc.context.strip("/") or "."
    where = Location(str(config.path)) if config.path else None
    kind = subprocess.run(["git", "cat-file", "-t", f"{sha}:{context}" if context != "." else
                           f"{sha}^{{tree}}"], cwd=repo_root, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=False).stdout.strip()
    on_disk = (repo_root / context).is_dir()
    if kind != "tree":
        raise InputError(
            f"services.{name}.context: {context!r} is not a directory in commit {sha[:7]}",
            location=where,
            hint=("it exists in the working tree but is not committed: commit it first"
                  if on_disk else "fix services." + name + ".context in the config"))
    dockerfile = f"{context}/{svc.dockerfile}" if context != "." else svc.dockerfile
    if subprocess.run(["git", "cat-file", "-e", f"{sha}:{dockerfile}"], cwd=repo_root,
                      capture_output=True, stdin=subprocess.DEVNULL).returncode != 0:
        raise InputError(
            f"services.{name}.dockerfile: {dockerfile} does not exist in commit {sha[:7]}",
            location=where,
            hint=f"add {svc.dockerfile} to {context}/, or set services.{name}.dockerfile")
    treeish = f"{sha}:{context}" if context != "." else sha
    proc = subprocess.run(["git", "archive", "--format=tar", treeish], cwd=repo_root,
                          capture_output=True, stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        raise ExternalError(f"git archive of {context} at {sha[:7]} failed: "
                            f"{proc.stderr.decode(errors='replace').strip()[:300]}")
    return _apply_dockerignore(proc.stdout, svc.dockerfile)


def _apply_dockerignore(tar_bytes: bytes, dockerfile: str) -> bytes:
    """Drop what .dockerignore excludes, as the docker CLI does before sending a context."""
    from docker.utils.build import PatternMatcher

    src = tarfile.open(fileobj=io.BytesIO(tar_bytes))
    try:
        member = src.getmember(".dockerignore")
    except KeyError:
        return tar_bytes
    text = src.extractfile(member).read().decode(errors="replace")
    patterns = [line.strip() for line in text.splitlines()
                if line.strip() and not line.strip().startswith("#")]
    matcher = PatternMatcher(patterns)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as dst:
        for info in src.getmembers():
            name = info.name.rstrip("/")
            # the Dockerfile and .dockerignore always reach the daemon (docker CLI rule)
            if name not in (dockerfile, ".dockerignore") and matcher.matches(name):
                continue
            dst.addfile(info, src.extractfile(info) if info.isfile() else None)
    return out.getvalue()


# ---------------------------------------------------------------- docker


def _docker_api(environ):
    import docker

    kwargs = docker.utils.kwargs_from_env(environment=dict(environ))
    host = kwargs.get("base_url") or "unix:///var/run/docker.sock"
    try:
        return docker.APIClient(version="auto", timeout=DOCKER_SOCKET_TIMEOUT, **kwargs)
    except docker.errors.DockerException as exc:
        raise ExternalError(f"cannot reach the Docker engine at {host}: {_short(str(exc))}",
                            hint="start dockerd, or point DOCKER_HOST at a running engine") from None


def _check_engine(environ) -> None:
    api = _docker_api(environ)
    api.close()


def _build_image(ctx, plan: BuildPlan, result: ServiceBuild, sha: str, labels: dict,
                 no_cache: bool, secrets: list[str]) -> None:
    import docker.errors
    import requests

    reporter = ctx.reporter
    api = _docker_api(ctx.environ)
    tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL)
    step = ""
    started = time.monotonic()
    deadline = started + BUILD_DEADLINE
    image_id = ""
    try:
        stream = api.build(fileobj=io.BytesIO(plan.context_tar), custom_context=True,
                           dockerfile=plan.dockerfile, buildargs={"SOURCE_SHA": sha},
                           labels=labels, nocache=no_cache, rm=True, forcerm=True, pull=False,
                           decode=True)
        for event in stream:
            if time.monotonic() > deadline:
                raise ExternalError(f"{plan.service}: build did not finish within "
                                    f"{BUILD_DEADLINE:.0f}s (at {step or 'start'})")
            if "error" in event or "errorDetail" in event:
                message = (event.get("errorDetail") or {}).get("message") or event.get("error", "")
                raise _build_error(plan, step, message, list(tail), secrets)
            aux = event.get("aux")
            if isinstance(aux, dict) and aux.get("ID"):
                image_id = aux["ID"]
            for line in str(event.get("stream", "")).splitlines():
                line = line.rstrip()
                if not line:
                    continue
                match = _STEP_RE.match(line)
                if match:
                    step = line
                    result.steps = int(match.group(2))
                    reporter.debug(f"{plan.service}: {line}")
                elif "Using cache" in line:
                    result.cached_steps += 1
                tail.append(line)
    except GitopsctlError:
        raise
    except docker.errors.APIError as exc:
        raise _build_error(plan, step, str(exc.explanation or exc), list(tail), secrets) from None
    except (requests.RequestException, OSError) as exc:
        raise ExternalError(f"{plan.service}: lost the Docker engine during the build: "
                            f"{_short(str(exc))}") from None
    finally:
        api.close()
    if not image_id:
        raise ExternalError(f"{plan.service}: the build produced no image",
                            details={"last_lines": list(tail)})
    result.image_id = image_id
    result.build_seconds = time.monotonic() - started
    api = _docker_api(ctx.environ)
    try:
        for tag in plan.tags:
            api.tag(image_id, plan.repository, tag, force=True)
    finally:
        api.close()
    cached = f", {result.cached_steps}/{result.steps} steps cached" if result.steps else ""
    reporter.success(f"{plan.service}: built {image_id[7:19]} in {result.build_seconds:.1f}s"
                     f"{cached}")


def _build_error(plan: BuildPlan, step: str, message: str, tail: list[str],
                 secrets: list[str]) -> GitopsctlError:
    message = _redact(message.strip(), secrets)
    tail = [_redact(line, secrets) for line in tail]
    details = {"service": plan.service, "step": step, "last_lines": tail}
    instruction = step.split(" : ", 1)[1] if " : " in step else ""
    lower = message.lower()
    if any(word in lower for word in _DISK_WORDS):
        return ExternalError(f"{plan.service}: out of disk space while building "
                             f"({step or 'start'})",
                             hint="free space on the Docker data root (`docker system prune`, "
                                  "`docker builder prune`) and retry", details=details)
    parse = re.search(r"dockerfile parse error|unknown instruction|unknown flag", lower)
    if parse:
        line = _PARSE_LINE_RE.search(message)
        loc = Location(f"{plan.context}/{plan.dockerfile}", int(line.group(1)) if line else None)
        return InputError(f"{plan.service}: invalid Dockerfile: {message}", location=loc,
                          hint="fix the instruction on that line", details=details)
    if "cannot locate specified dockerfile" in lower:
        return InputError(f"{plan.service}: {plan.dockerfile} is not in the build context",
                          location=Location(plan.context),
                          hint="check services.<name>.dockerfile and .dockerignore",
                          details=details)
    if instruction.upper().startswith("FROM"):
        # the engine found no local copy and could not pull one either
        return ExternalError(f"{plan.service}: base image of `{instruction}` is not available: "
                             f"{message}",
                             hint="import or pull the base image into this Docker engine first "
                                  "(the examples need gitopsctl.local/busybox:base, see "
                                  "examples/README.md)", details=details)
    where = f"step {step.split(' ', 2)[1]} `{instruction}`" if instruction else "the build"
    code = _NONZERO_RE.search(message)
    what = f"exited with code {code.group(1)}" if code else message
    lines = "\n".join(f"    {line}" for line in tail[-10:])
    return ExternalError(f"{plan.service}: {where} failed: {what}\n  last build output:\n{lines}",
                         hint=f"reproduce with `docker build {plan.context}`", details=details)


# ---------------------------------------------------------------- push


def _push_image(ctx, plan: BuildPlan, result: ServiceBuild, credentials, progress,
                secrets: list[str]) -> None:
    import docker.errors
    import requests

    started = time.monotonic()
    deadline = started + PUSH_DEADLINE
    auth = credentials.docker_auth_config() if credentials else None
    for tag in plan.tags:
        last_error = ""
        for attempt in range(1, PUSH_ATTEMPTS + 1):
            api = _docker_api(ctx.environ)
            try:
                digest = _push_tag(api, plan, tag, auth, progress, deadline, secrets)
                last_error = ""
                break
            except _RetryablePush as exc:
                last_error = str(exc)
            except docker.errors.APIError as exc:
                last_error = _redact(str(exc.explanation or exc), secrets)
                if _is_auth_error(last_error):
                    raise _push_auth_error(plan, last_error) from None
            except (requests.RequestException, OSError) as exc:
                last_error = f"lost the Docker engine: {_short(str(exc))}"
            finally:
                api.close()
            if attempt < PUSH_ATTEMPTS and time.monotonic() < deadline:
                ctx.reporter.warning(f"{plan.service}: push of {tag} failed ({last_error}); "
                                     f"retry {attempt}/{PUSH_ATTEMPTS - 1}")
                time.sleep(min(2.0 * attempt, max(0.0, deadline - time.monotonic())))
        if last_error:
            raise ExternalError(f"{plan.service}: push of {plan.repository}:{tag} failed after "
                                f"{PUSH_ATTEMPTS} attempts: {last_error}",
                                hint="check that the registry is up and has free space",
                                details={"service": plan.service, "tag": tag})
        if digest:
            result.digest = result.digest or digest
    result.push_seconds = time.monotonic() - started


class _RetryablePush(Exception):
    pass


def _push_tag(api, plan: BuildPlan, tag: str, auth, progress, deadline: float,
              secrets: list[str]) -> str:
    digest = ""
    for event in api.push(plan.repository, tag=tag, stream=True, decode=True, auth_config=auth):
        if time.monotonic() > deadline:
            raise ExternalError(f"{plan.service}: push did not finish within {PUSH_DEADLINE:.0f}s")
        if "error" in event or "errorDetail" in event:
            message = _redact((event.get("errorDetail") or {}).get("message")
                              or event.get("error", ""), secrets)
            if _is_auth_error(message):
                raise _push_auth_error(plan, message)
            if any(word in message.lower() for word in _DISK_WORDS):
                raise ExternalError(f"{plan.service}: the registry is out of disk space: "
                                    f"{message}", hint="free space on the registry's storage")
            raise _RetryablePush(message)
        aux = event.get("aux")
        if isinstance(aux, dict) and aux.get("Digest"):
            digest = aux["Digest"]
        layer = event.get("id")
        if layer and layer != tag:
            detail = event.get("progressDetail") or {}
            progress.update(plan.service, layer, event.get("status", ""),
                            detail.get("current"), detail.get("total"))
    return digest


def _is_auth_error(message: str) -> bool:
    lower = message.lower()
    return any(word in lower for word in _AUTH_WORDS)


def _push_auth_error(plan: BuildPlan, message: str) -> ExternalError:
    return ExternalError(f"{plan.service}: the registry refused the push: {message}",
                         hint="check the robot account in $HARBOR_USERNAME/$HARBOR_PASSWORD "
                              "(or the registry.*_env variables): it needs push permission on "
                              "the project")


class _PushProgress:
    """Per-layer push progress: a rich progress display on a terminal, else quiet lines."""

    def __init__(self, reporter, live):
        self._reporter = reporter
        self._live = live
        self._tasks: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def create(cls, reporter) -> "_PushProgress":
        from gitopsctl.console import NullReporter

        live = None
        console = None if isinstance(reporter, NullReporter) else reporter.console
        if console is not None and console.is_terminal:
            from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                                       TimeElapsedColumn)

            live = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                            TimeElapsedColumn(), console=console, transient=True)
            live.start()
        return cls(reporter, live)

    def update(self, service: str, layer: str, status: str, current, total) -> None:
        key = (service, layer)
        with self._lock:
            if self._live is not None:
                task = self._tasks.get(key)
                description = f"{service} {layer[:12]} {status}"
                if task is None:
                    task = self._live.add_task(description, total=total or None)
                    self._tasks[key] = task
                done = status in ("Pushed", "Layer already exists", "Mounted from")
                self._live.update(task, description=description,
                                  completed=(total if done and total else current or 0),
                                  total=total or None)
                if done:
                    self._live.update(task, completed=1, total=1)
            elif status in ("Pushed", "Layer already exists") or status.startswith("Mounted"):
                self._reporter.debug(f"{service}: layer {layer[:12]} {status.lower()}")

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"
