"""Pure readings of Deployment and Pod objects (wire-shape dicts): rollout progress and pod failures.

The same rules `kubectl rollout status` applies, plus the container states that mean a
rollout will not recover on its own, so a caller can stop waiting the moment the API
shows one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

# Waiting reasons the kubelet reports for containers that will not start without a change.
FAILING_WAIT_REASONS = frozenset({
    "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError",
    "CreateContainerError", "InvalidImageName", "RunContainerError",
})
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


def pod_problem(pod: Mapping[str, Any]) -> PodProblem | None:
    """The first container state in `pod` that means it will not become healthy, or None."""
    name = (pod.get("metadata") or {}).get("name", "?")
    st = pod.get("status") or {}
    statuses = list(st.get("initContainerStatuses") or []) + list(st.get("containerStatuses") or [])
    for cs in statuses:
        state = cs.get("state") or {}
        last = (cs.get("lastState") or {}).get("terminated") or {}
        restarts = int(cs.get("restartCount") or 0)
        waiting = state.get("waiting") or {}
        exit_code = last.get("exitCode")
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
    if st.get("phase") == "Failed":
        return PodProblem(name, "", st.get("reason") or "Failed", 0, st.get("message", ""))
    return None


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
