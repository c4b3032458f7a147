"""Pure readings of workloads and Pods (wire-shape dicts): rollout progress and pod failures.

The same rules `kubectl rollout status` applies to Deployments, StatefulSets and DaemonSets
(kubernetes/kubernetes staging/src/k8s.io/kubectl/pkg/polymorphichelpers/rollout_status.go),
which of their pods belong to the release being rolled out, plus the container states that
mean a rollout will not recover on its own, so a caller can stop waiting the moment the API
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
# StatefulSet pods carry their ControllerRevision's name here, DaemonSet pods its hash label
# (pkg/controller/statefulset stateful_set_utils.go setPodRevision, pkg/controller/daemon update.go).
REVISION_HASH_LABEL = "controller-revision-hash"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


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


def workload_rollout(kind: str, workload: Mapping[str, Any]) -> Rollout:
    """kubectl rollout status of one workload, as a verdict."""
    judge = {"Deployment": rollout_status, "StatefulSet": statefulset_rollout, "DaemonSet": daemonset_rollout}
    return judge[kind](workload)


def statefulset_rollout(sts: Mapping[str, Any]) -> Rollout:
    """StatefulSetStatusViewer: every pod ready and, with a partition (the API defaults one,
    0), every ordinal from the partition up updated; else the current revision caught up."""
    meta, spec, st = sts.get("metadata") or {}, sts.get("spec") or {}, sts.get("status") or {}
    want = int(spec.get("replicas", 1))
    counts = dict(replicas=want, updated=int(st.get("updatedReplicas") or 0), ready=int(st.get("readyReplicas") or 0),
                  available=int(st.get("availableReplicas") or 0))
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return Rollout("failed", "rollout status is only available for RollingUpdate strategy type "
                                 f"(this StatefulSet updates {strategy.get('type')})", **counts)
    observed = int(st.get("observedGeneration") or 0)
    if observed == 0 or int(meta.get("generation") or 0) > observed:
        return Rollout("progressing", "waiting for the StatefulSet spec update to be observed", **counts)
    if counts["ready"] < want:
        return Rollout("progressing", f"{counts['ready']} of {want} pods ready", **counts)
    rolling = strategy.get("rollingUpdate")
    if rolling is not None:
        partition = rolling.get("partition")
        if partition is not None and counts["updated"] < want - int(partition):
            return Rollout("progressing", f"{counts['updated']} of {want - int(partition)} new pods updated "
                                          f"(partition {partition})", **counts)
        return Rollout("complete", f"{counts['updated']} new pods updated, {counts['ready']} of {want} ready",
                       **counts)
    if st.get("updateRevision") != st.get("currentRevision"):
        return Rollout("progressing", f"{counts['updated']} pods at revision {st.get('updateRevision')}", **counts)
    return Rollout("complete", f"{st.get('currentReplicas', 0)} pods at revision {st.get('currentRevision')}",
                   **counts)


def daemonset_rollout(ds: Mapping[str, Any]) -> Rollout:
    """DaemonSetStatusViewer: every node that should run the pod runs the updated one, available."""
    meta, spec, st = ds.get("metadata") or {}, ds.get("spec") or {}, ds.get("status") or {}
    desired = int(st.get("desiredNumberScheduled") or 0)
    counts = dict(replicas=desired, updated=int(st.get("updatedNumberScheduled") or 0),
                  ready=int(st.get("numberReady") or 0), available=int(st.get("numberAvailable") or 0))
    strategy = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate")
    if strategy != "RollingUpdate":
        return Rollout("failed", "rollout status is only available for RollingUpdate strategy type "
                                 f"(this DaemonSet updates {strategy})", **counts)
    if int(meta.get("generation") or 0) > int(st.get("observedGeneration") or 0):
        return Rollout("progressing", "waiting for the DaemonSet spec update to be observed", **counts)
    if counts["updated"] < desired:
        return Rollout("progressing", f"{counts['updated']} of {desired} new pods updated", **counts)
    if counts["available"] < desired:
        return Rollout("progressing", f"{counts['available']} of {desired} updated pods available", **counts)
    return Rollout("complete", f"{counts['available']} of {desired} nodes run the new pod", **counts)


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


def newest_revision(revisions: list[Mapping[str, Any]], owner: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The owner's ControllerRevision with the highest number: its current template (the
    controllers renumber an old one that comes back, pkg/controller/history)."""
    uid = (owner.get("metadata") or {}).get("uid")
    owned = [r for r in revisions
             if any(ref.get("uid") == uid for ref in (r.get("metadata") or {}).get("ownerReferences") or [])]
    return max(owned, key=lambda r: int(r.get("revision") or 0), default=None)


def selector_of(workload: Mapping[str, Any]) -> str:
    labels = ((workload.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def current_pod_selector(kind: str, workload: Mapping[str, Any], *, replicasets: list[Mapping[str, Any]] = (),
                         revisions: list[Mapping[str, Any]] = ()) -> str | None:
    """The label selector of the pods of the workload's newest release; None while it has none.

    Deployment: the newest ReplicaSet's pod-template-hash. StatefulSet: controller-revision-hash
    equal to status.updateRevision. DaemonSet: the hash label of its newest ControllerRevision.
    """
    selector = selector_of(workload)
    if kind == "Deployment":
        rs = newest_replicaset(list(replicasets), workload)
        value = ((rs or {}).get("metadata", {}).get("labels") or {}).get(TEMPLATE_HASH_LABEL)
        label = TEMPLATE_HASH_LABEL
    elif kind == "StatefulSet":
        value, label = (workload.get("status") or {}).get("updateRevision"), REVISION_HASH_LABEL
    else:
        revision = newest_revision(list(revisions), workload)
        value = ((revision or {}).get("metadata", {}).get("labels") or {}).get(REVISION_HASH_LABEL)
        label = REVISION_HASH_LABEL
    if not value:
        return None
    return f"{selector},{label}={value}" if selector else f"{label}={value}"
