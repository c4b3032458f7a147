"""Figure 4 of benchmarks/pipeline.py: a backend that fails on the VM, to the revert.

A release whose backend fails after the frontend went live: `crash` (the container exits
at start) or `unhealthy` (it runs, but its compose healthcheck fails until Docker calls
it unhealthy). The clock starts at the first failure the VM's Docker engine shows, read
from the engine's own event stream for the compose project:

* crash: the new backend container's `die` event with a non-zero exit code;
* unhealthy: its `health_status: unhealthy` event (Docker's verdict after the
  healthcheck's `retries` failures; the failing probes before it are Docker's to
  retry, as `depends_on: service_healthy` and `compose up --wait` retry them too).

It stops when the remote accepted the revert commit (the post-receive hook of
pipeline_watch.PushLog). The revert must undo both services' deploy commits.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from pipeline_watch import container_events  # benchmarks/ is on sys.path (pipeline.py)

BACKEND_FAIL_MODE = "examples/backend/fail-mode"
FRONTEND_HTML = "examples/frontend/www/index.html"
BACKEND_HTML = "examples/backend/www/index.html"
FRONTEND_FAIL_MODE = "examples/frontend/fail-mode"


@dataclass
class BackendFailure:
    mode: str
    push_to_failure: float       # D2 (the backend's deploy commit) accepted -> first failure
    failure_to_revert: float     # first failure on the VM -> revert accepted by the remote
    failure_to_verdict: float    # first failure -> the remote `gitopsctl sync` finished its verdict
    verdict_to_revert: float     # that verdict -> revert accepted (SSH back, rollback, push)
    revert_to_stage_exit: float  # revert accepted -> `gitopsctl stage` exits (rollback verified)


def first_failure(client, project: str, image_fragment: str, mode: str, since: float,
                  until: float) -> float:
    """When the engine first showed the new backend failing (see the module docstring)."""
    for when, action, attributes in container_events(client, project, since, until):
        if image_fragment not in attributes.get("image", ""):
            continue
        if mode == "crash" and action == "die" and attributes.get("exitCode", "0") != "0":
            return when
        if mode == "unhealthy" and action.startswith("health_status: unhealthy"):
            return when
    raise SystemExit(f"the engine showed no {mode} failure of the backend {image_fragment}")


def backend_failure_run(lab, pushes, pipeline, mode: str, index: int) -> BackendFailure:
    """One release whose frontend is fine and whose backend fails with `mode`."""
    previous = lab.served_version("backend")
    run = pipeline(lab, pushes, {FRONTEND_HTML: f"<h1>backend {mode} {index}</h1>\n",
                                 BACKEND_HTML: f"backend {mode} {index}\n",
                                 FRONTEND_FAIL_MODE: "none\n", BACKEND_FAIL_MODE: f"{mode}\n"},
                   f"backend: {mode} {index}")
    rollback = run.stage.get("rollback") or {}
    if run.stage.get("outcome") != "rolled-back" or not rollback.get("verified"):
        raise SystemExit(f"the failing backend {run.sha[:7]} was not rolled back and verified: "
                         f"{json.dumps(run.stage)[:3000]}")
    commits = run.stage.get("commits") or []
    if len(commits) < 2:
        raise SystemExit(f"{run.sha[:7]}: expected deploy commits of both services, got {commits}")
    reverted = {item["service"] for item in rollback.get("reverted") or []}
    if reverted != {"frontend", "backend"}:
        raise SystemExit(f"{run.sha[:7]}: the revert undid {sorted(reverted)}, not both services")
    revert = rollback["commit"]
    reverted_at = pushes.pushed_at(revert)
    failed_at = first_failure(lab.client, lab.compose_project, f"-{run.sha[:7]}-", mode,
                              pushes.pushed_at(commits[1]), time.time())
    if lab.served_version("backend") != previous:
        raise SystemExit(f"backend serves {lab.served_version('backend')!r} after the rollback, "
                         f"not {previous!r}")
    remote = _remote_answer(run.stage)
    verdict_at = float(remote.get("finished_at") or 0.0)
    if not verdict_at:
        raise SystemExit(f"{run.sha[:7]}: the remote sync's answer has no finished_at: {remote}")
    return BackendFailure(mode=mode, push_to_failure=failed_at - pushes.pushed_at(commits[1]),
                          failure_to_revert=reverted_at - failed_at,
                          failure_to_verdict=verdict_at - failed_at,
                          verdict_to_revert=reverted_at - verdict_at,
                          revert_to_stage_exit=run.stage_ended - reverted_at)


def _remote_answer(stage: dict) -> dict:
    """The remote sync's JSON as stage kept it in its failed backend step."""
    for item in stage.get("steps", []):
        if item.get("name") == "backend healthy":
            return ((item.get("data") or {}).get("details") or {}).get("remote") or {}
    raise SystemExit(f"stage has no 'backend healthy' step: {json.dumps(stage)[:2000]}")
