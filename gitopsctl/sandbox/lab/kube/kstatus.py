"""kstatus: the status kustomize-controller's health check reads from an object.

Follows sigs.k8s.io/cli-utils pkg/kstatus/status (generic.go `checkGeneration`, core.go
`deploymentConditions`), the library fluxcd/pkg ssa/manager_wait.go polls with. Only
Deployments are health-checked by the simulator, so only their rules are here.
"""

from __future__ import annotations

from typing import Any, Mapping

CURRENT, IN_PROGRESS, FAILED, NOT_FOUND = "Current", "InProgress", "Failed", "NotFound"

# cli-utils core.go treats an absent progressDeadlineSeconds as "always progressing",
# mirroring the Deployment controller's MaxInt32 sentinel.
_NO_DEADLINE = 2**31 - 1


def deployment_status(dep: Mapping[str, Any] | None) -> tuple[str, str]:
    """(status, message) of a Deployment as kstatus computes it; None is NotFound."""
    if dep is None:
        return NOT_FOUND, "Resource not found"
    meta, spec, st = dep.get("metadata") or {}, dep.get("spec") or {}, dep.get("status") or {}
    generation, observed = meta.get("generation"), st.get("observedGeneration")
    if generation is not None and observed is not None and observed != generation:
        return IN_PROGRESS, (f"Deployment generation is {generation}, but latest observed generation is "
                             f"{observed}")
    progressing = spec.get("progressDeadlineSeconds", _NO_DEADLINE) == _NO_DEADLINE
    available = False
    for cond in st.get("conditions") or []:
        if cond.get("type") == "Progressing":
            if cond.get("reason") == "ProgressDeadlineExceeded":
                return FAILED, "Progress deadline exceeded"
            if cond.get("status") == "True" and cond.get("reason") == "NewReplicaSetAvailable":
                progressing = True
        elif cond.get("type") == "Available" and cond.get("status") == "True":
            available = True
    want = int(spec.get("replicas", 1))
    replicas, updated = int(st.get("replicas", 0)), int(st.get("updatedReplicas", 0))
    ready, avail = int(st.get("readyReplicas", 0)), int(st.get("availableReplicas", 0))
    if want > replicas:
        return IN_PROGRESS, f"Replicas: {replicas}/{want}"
    if want > updated:
        return IN_PROGRESS, f"Updated: {updated}/{want}"
    if replicas > want:
        return IN_PROGRESS, f"Pending termination: {replicas - want}"
    if updated > avail:
        return IN_PROGRESS, f"Available: {avail}/{updated}"
    if want > ready:
        return IN_PROGRESS, f"Ready: {ready}/{want}"
    if not progressing:
        return IN_PROGRESS, "ReplicaSet not Available"
    if not available:
        return IN_PROGRESS, "Deployment not Available"
    return CURRENT, f"Deployment is available. Replicas: {replicas}"
