"""Pushing one image's tags to the registry, retried a bounded number of times."""

from __future__ import annotations

import time

from gitopsctl.build.engine import DISK_WORDS, docker_api, redact_secrets, short
from gitopsctl.build.results import BuildPlan, ServiceBuild
from gitopsctl.errors import ExternalError

PUSH_DEADLINE = 30 * 60.0      # seconds for pushing one image (all its tags)
PUSH_ATTEMPTS = 3              # bounded retries for a push that fails on the network
_AUTH_WORDS = ("unauthorized", "authentication required", "denied", "forbidden", "401", "403")


def push_image(ctx, plan: BuildPlan, result: ServiceBuild, credentials, progress,
               secrets: list[str]) -> None:
    import docker.errors
    import requests

    started = time.monotonic()
    deadline = started + PUSH_DEADLINE
    auth = credentials.docker_auth_config() if credentials else None
    for tag in plan.tags:
        last_error = ""
        for attempt in range(1, PUSH_ATTEMPTS + 1):
            api = docker_api(ctx.environ)
            try:
                digest = _push_tag(api, plan, tag, auth, progress, deadline, secrets)
                last_error = ""
                break
            except _RetryablePush as exc:
                last_error = str(exc)
            except docker.errors.APIError as exc:
                last_error = redact_secrets(str(exc.explanation or exc), secrets)
                if _is_auth_error(last_error):
                    raise _push_auth_error(plan, last_error) from None
            except (requests.RequestException, OSError) as exc:
                last_error = f"lost the Docker engine: {short(str(exc))}"
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
            message = redact_secrets((event.get("errorDetail") or {}).get("message")
                              or event.get("error", ""), secrets)
            if _is_auth_error(message):
                raise _push_auth_error(plan, message)
            if any(word in message.lower() for word in DISK_WORDS):
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
