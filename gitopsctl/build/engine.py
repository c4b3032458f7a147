"""Building one image with the Docker engine, and what a failed build means."""

from __future__ import annotations

import collections
import io
import re
import time

from gitopsctl.build.results import BuildPlan, ServiceBuild
from gitopsctl.errors import ExternalError, GitopsctlError, InputError, Location

BUILD_DEADLINE = 30 * 60.0     # seconds for one image build
DOCKER_SOCKET_TIMEOUT = 600    # a build step may print nothing for a while
LOG_TAIL = 15                  # build output lines shown with a failure

_STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_NONZERO_RE = re.compile(r"returned a non-zero code: (\d+)")
_PARSE_LINE_RE = re.compile(r"(?:dockerfile parse error )?line (\d+)", re.IGNORECASE)
DISK_WORDS = ("no space left on device", "disk quota exceeded")


def docker_api(environ):
    import docker

    kwargs = docker.utils.kwargs_from_env(environment=dict(environ))
    host = kwargs.get("base_url") or "unix:///var/run/docker.sock"
    try:
        return docker.APIClient(version="auto", timeout=DOCKER_SOCKET_TIMEOUT, **kwargs)
    except docker.errors.DockerException as exc:
        raise ExternalError(f"cannot reach the Docker engine at {host}: {short(str(exc))}",
                            hint="start dockerd, or point DOCKER_HOST at a running engine") from None


def check_engine(environ) -> None:
    api = docker_api(environ)
    api.close()


def build_image(ctx, plan: BuildPlan, result: ServiceBuild, sha: str, labels: dict,
                no_cache: bool, secrets: list[str]) -> None:
    import docker.errors
    import requests

    reporter = ctx.reporter
    api = docker_api(ctx.environ)
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
                raise build_error(plan, step, message, list(tail), secrets)
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
        raise build_error(plan, step, str(exc.explanation or exc), list(tail), secrets) from None
    except (requests.RequestException, OSError) as exc:
        raise ExternalError(f"{plan.service}: lost the Docker engine during the build: "
                            f"{short(str(exc))}") from None
    finally:
        api.close()
    if not image_id:
        raise ExternalError(f"{plan.service}: the build produced no image",
                            details={"last_lines": list(tail)})
    result.image_id = image_id
    result.build_seconds = time.monotonic() - started
    api = docker_api(ctx.environ)
    try:
        for tag in plan.tags:
            api.tag(image_id, plan.repository, tag, force=True)
    finally:
        api.close()
    cached = f", {result.cached_steps}/{result.steps} steps cached" if result.steps else ""
    reporter.success(f"{plan.service}: built {image_id[7:19]} in {result.build_seconds:.1f}s"
                     f"{cached}")


def build_error(plan: BuildPlan, step: str, message: str, tail: list[str],
                secrets: list[str]) -> GitopsctlError:
    message = redact_secrets(message.strip(), secrets)
    tail = [redact_secrets(line, secrets) for line in tail]
    details = {"service": plan.service, "step": step, "last_lines": tail}
    instruction = step.split(" : ", 1)[1] if " : " in step else ""
    lower = message.lower()
    if any(word in lower for word in DISK_WORDS):
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
                                  "(the example apps need gitopsctl.local/busybox:base: "
                                  "examples/README.md in the gitopsctl repository)", details=details)
    where = f"step {step.split(' ', 2)[1]} `{instruction}`" if instruction else "the build"
    code = _NONZERO_RE.search(message)
    what = f"exited with code {code.group(1)}" if code else message
    lines = "\n".join(f"    {line}" for line in tail[-10:])
    return ExternalError(f"{plan.service}: {where} failed: {what}\n  last build output:\n{lines}",
                         hint=f"reproduce with `docker build {plan.context}`", details=details)


def redact_secrets(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"
