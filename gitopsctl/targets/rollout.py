"""Pure readings of Deployment and Pod objects (wire-shape dicts): rollout progress and pod failures.

The same rules `kubectl rollout status` applies, plus the container states that mean a
rollout will not recover on its own, so a caller can stop waiting the moment the API
shows one. Verdicts that depend on how long a state has lasted take the time (`now`,
seconds since the epoch, as the API's timestamps are) from the caller.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

# Waiting reasons the kubelet reports for containers that will not start without a change
# (the two pull reasons only once they outlast PULL_FAILURE_GRACE).
FAILING_WAIT_REASONS = frozenset({
    "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError",
    "CreateContainerError", "InvalidImageName", "RunContainerError", "ErrImageNeverPull",
})
# A pull can fail for a moment (a registry restart, a failover) and the kubelet retries it,
# with back-offs of 10 s then 20 s (pkg/kubelet/images/image_manager.go), so its third
# attempt comes about 30 s after the first. Judging a pull failure only once it has lasted
# longer than that lets a registry that is back within ~30 s cost a delay, not a rollback
# of a good release; a tag that never exists still fails within ~30 s plus one back-off,
# well inside any deploy deadline.
PULL_WAIT_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff"})
PULL_FAILURE_GRACE = 30.0
# The kubelet forgets a container's crash back-off once it has run for 2 x its 5 min cap
# (client-go util/flowcontrol/backoff.go hasExpired): a restart older than that is history,
# not a crash loop.
CRASH_MEMORY = 600.0
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
TEMPLATE_HASH_LABEL = "pod-template-hash"


@dataclass(frozen=True)
class Rollout:
    state: str  # "progressing", "complete", "failed"
    message: str
    replicas: int = 0
    updated: int = 0
    ready: int = 0
    available: int = 0

    @property
    def complete(self) -> bool:
        return self.state == "complete"

    @property
    def failed(self) -> bool:
        return self.state == "failed"


def rollout_status(deployment: Mapping[str, Any]) -> Rollout:
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    st = deployment.get("status") or {}
    want = spec.get("replicas", 1)
    counts = dict(replicas=want, updated=st.get("updatedReplicas", 0) or 0,
                  ready=st.get("readyReplicas", 0) or 0, available=st.get("availableReplicas", 0) or 0)
    if (st.get("observedGeneration") or 0) < (meta.get("generation") or 0):
        return Rollout("progressing", "waiting for the Deployment spec update to be observed", **counts)
    for cond in st.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return Rollout("failed", f"progress deadline exceeded: {cond.get('message', '')}".strip(), **counts)
    total = st.get("replicas", 0) or 0
    if counts["updated"] < want:
        return Rollout("progressing", f"{counts['updated']} of {want} new replicas updated", **counts)
    if total > counts["updated"]:
        return Rollout("progressing", f"{total - counts['updated']} old replicas pending termination", **counts)
    if counts["available"] < counts["updated"]:
        return Rollout("progressing", f"{counts['available']} of {counts['updated']} updated replicas available",
                       **counts)
    return Rollout("complete", f"{counts['available']} of {want} replicas available", **counts)


@dataclass(frozen=True)
class PodProblem:
    pod: str
    container: str
    reason: str
    restarts: int
    message: str = ""
    exit_code: int | None = None

    def summary(self) -> str:
        return f"pod {self.pod} {self.reason} (restarts {self.restarts})"

    def evidence(self) -> list[str]:
        lines = [f"pod {self.pod} container {self.container}: {self.reason}, restarts {self.restarts}"]
        if self.exit_code is not None:
            lines.append(f"last exit code {self.exit_code}")
        if self.message:
            lines.append(self.message)
        return lines


def pod_problem(pod: Mapping[str, Any], now: float | None = None, *, pull_grace: float = PULL_FAILURE_GRACE,
                crash_memory: float = CRASH_MEMORY, early_crash: bool = False) -> PodProblem | None:
    """The first container state in `pod` that means it will not become healthy, or None.

    `now` defaults to the wall clock. A pull failure counts once it has lasted more than
    `pull_grace` seconds since the kubelet took the pod (status.startTime). With
    `early_crash` (a deploy watching the pods of its new release), a container that exited
    non-zero and was restarted is judged a crash loop at that restart, one exit before the
    kubelet shows CrashLoopBackOff, unless its last run ended more than `crash_memory`
    seconds ago. Without it (verify, status, the soak) one crash that the pod got over is
    history, as it is to the kubelet: only the kubelet's own reasons count.
    """
    now = time.time() if now is None else now
    name = (pod.get("metadata") or {}).get("name", "?")
    st = pod.get("status") or {}
    statuses = list(st.get("initContainerStatuses") or []) + list(st.get("containerStatuses") or [])
    for cs in statuses:
        state = cs.get("state") or {}
        last = (cs.get("lastState") or {}).get("terminated") or {}
        restarts = int(cs.get("restartCount") or 0)
        waiting = state.get("waiting") or {}
        exit_code = last.get("exitCode")
        if waiting.get("reason") in PULL_WAIT_REASONS and _pull_failing_for(pod, now) <= pull_grace:
            continue
        if waiting.get("reason") in FAILING_WAIT_REASONS:
            reason = waiting["reason"]
            # A crash loop whose crashes are OOM kills is an OOM loop; say so.
            if reason == "CrashLoopBackOff" and last.get("reason") == "OOMKilled":
                reason = "OOMKilled"
            return PodProblem(name, cs.get("name", "?"), reason, restarts,
                              waiting.get("message", ""), exit_code)
        terminated = state.get("terminated") or {}
        if terminated.get("reason") == "OOMKilled" or (last.get("reason") == "OOMKilled" and restarts > 0):
            oom = terminated if terminated.get("reason") == "OOMKilled" else last
            return PodProblem(name, cs.get("name", "?"), "OOMKilled", restarts,
                              oom.get("message", ""), oom.get("exitCode"))
        if early_crash and restarts > 0 and exit_code not in (None, 0) and not waiting \
                and now - _epoch(last.get("finishedAt"), default=now) <= crash_memory:
            return PodProblem(name, cs.get("name", "?"), "CrashLoopBackOff", restarts,
                              f"exited with code {exit_code} ({last.get('reason') or 'Error'}) and was restarted: "
                              "a crash loop, judged before the kubelet backs off at the next exit", exit_code)
    if st.get("phase") == "Failed":
        return PodProblem(name, "", st.get("reason") or "Failed", 0, st.get("message", ""))
    return None


def _pull_failing_for(pod: Mapping[str, Any], now: float) -> float:
    """Seconds the pod has waited for its images; unbounded when the pod says nothing of its start."""
    st = pod.get("status") or {}
    started = _epoch(st.get("startTime") or (pod.get("metadata") or {}).get("creationTimestamp"), default=None)
    return float("inf") if started is None else now - started


def _epoch(stamp: Any, *, default: float | None) -> float | None:
    """An RFC 3339 timestamp of the API as seconds since the epoch; `default` when absent or unreadable."""
    if not isinstance(stamp, str) or not stamp:
        return default
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default


def pod_summary(pod: Mapping[str, Any]) -> str:
    """One line for progress and evidence: phase, readiness, restarts."""
    name = (pod.get("metadata") or {}).get("name", "?")
    st = pod.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or [])
    restarts = sum(int(c.get("restartCount") or 0) for c in st.get("containerStatuses") or [])
    states = []
    for cs in st.get("containerStatuses") or []:
        for key, val in (cs.get("state") or {}).items():
            states.append(f"{cs.get('name')}={key}" + (f"({val.get('reason')})" if val and val.get("reason") else ""))
    return (f"pod {name} {st.get('phase', 'Pending')}, {'ready' if ready else 'not ready'}, "
            f"restarts {restarts}" + (f", {' '.join(states)}" if states else ""))


def newest_replicaset(replicasets: list[Mapping[str, Any]], deployment: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ReplicaSet the Deployment's current template owns (highest revision it owns)."""
    uid = (deployment.get("metadata") or {}).get("uid")
    wanted = ((deployment.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION)
    owned = [rs for rs in replicasets
             if any(ref.get("uid") == uid for ref in (rs.get("metadata") or {}).get("ownerReferences") or [])]
    if wanted is not None:
        for rs in owned:
            if ((rs.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION) == wanted:
                return rs

    def revision(rs: Mapping[str, Any]) -> int:
        value = ((rs.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION, "0")
        return int(value) if str(value).isdigit() else 0

    return max(owned, key=revision, default=None)
