"""Deployment and ReplicaSet controllers, level-triggered like kube-controller-manager's.

Each tick reads the whole store and moves it one step towards the desired state:
a ReplicaSet per pod-template hash, a rollover that keeps old pods until the new ones
are available (maxUnavailable 0, as the defaults give for small replica counts), and
pods created or marked for deletion to match each ReplicaSet. The kubelet does the rest.
Pods are made and deleted as podcontrol.py does it for every controller.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from gitopsctl.sandbox.lab.kube.podcontrol import new_pod, owner_ref, random_suffix, terminate_pod
from gitopsctl.sandbox.lab.kube.selectors import Selector
from gitopsctl.sandbox.lab.kube.store import DEPLOYMENTS, PODS, REPLICASETS, Store, StoreError, now_rfc3339

REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"


def template_hash(template: dict) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    return digest[:10]


def owned_by(obj: dict, owner: dict) -> bool:
    uid = owner["metadata"]["uid"]
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


def set_condition(conditions: list[dict], type_: str, status: str, reason: str, message: str,
                  **extra: Any) -> list[dict]:
    """Upsert a condition, keeping lastTransitionTime when the status did not change."""
    now = now_rfc3339()
    for cond in conditions:
        if cond.get("type") == type_:
            if cond.get("status") != status:
                cond["lastTransitionTime"] = now
            cond.update(status=status, reason=reason, message=message, **extra)
            return conditions
    conditions.append({"type": type_, "status": status, "reason": reason, "message": message,
                       "lastTransitionTime": now, **extra})
    return conditions


def pod_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def terminating(obj: dict) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


# Deployment condition reasons (kubernetes/kubernetes pkg/controller/deployment/util/deployment_util.go).
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
DEFAULT_PROGRESS_DEADLINE = 600  # API defaulting of spec.progressDeadlineSeconds
NO_PROGRESS_DEADLINE = 2**31 - 1  # math.MaxInt32: the deadline is off


def progress_deadline(spec: dict) -> float | None:
    value = spec.get("progressDeadlineSeconds", DEFAULT_PROGRESS_DEADLINE)
    return None if value is None or int(value) == NO_PROGRESS_DEADLINE else float(value)


def progressing_condition(old: dict, new: dict, desired: int, generation: int, rs_name: str,
                          deadline: float | None, current: dict | None, idle_for: float) -> dict | None:
    """The Progressing condition syncRolloutStatus (pkg/controller/deployment/progress.go) sets, or None.

    `old` and `new` are the status before and after this sync, `current` the condition
    now stored, `idle_for` the seconds since its lastUpdateTime (the last progress).
    None means: leave the condition as it is.
    """
    if deadline is None:
        return None
    if current is not None and current.get("reason") == NEW_RS_AVAILABLE \
            and new["replicas"] == new["updatedReplicas"]:
        return None  # a finished rollout: nothing to estimate on a resync
    if (new["updatedReplicas"] == desired and new["replicas"] == desired
            and new["availableReplicas"] == desired and new["observedGeneration"] >= generation):
        return {"status": "True", "reason": NEW_RS_AVAILABLE,
                "message": f'ReplicaSet "{rs_name}" has successfully progressed.', "touch": False}
    old_olds = old.get("replicas", 0) - old.get("updatedReplicas", 0)
    new_olds = new["replicas"] - new["updatedReplicas"]
    if (new["updatedReplicas"] > old.get("updatedReplicas", 0) or new_olds < old_olds
            or new["readyReplicas"] > old.get("readyReplicas", 0)
            or new["availableReplicas"] > old.get("availableReplicas", 0)):
        # Progress moves lastUpdateTime even when the reason stays the same.
        return {"status": "True", "reason": RS_UPDATED, "message": f'ReplicaSet "{rs_name}" is progressing.',
                "touch": True}
    if current is None or current.get("reason") == NEW_RS_AVAILABLE:
        return None
    if current.get("reason") == TIMED_OUT or idle_for > deadline:
        return {"status": "False", "reason": TIMED_OUT, "message": f'ReplicaSet "{rs_name}" has timed out progressing.',
                "touch": False}
    return None


class DeploymentController:
    def __init__(self, store: Store):
        self.store = store
        # deployment uid -> time.monotonic() of the Progressing condition's lastUpdateTime, which the
        # wire format keeps only to the second
        self._last_progress: dict[str, float] = {}

    def tick(self) -> None:
        deployments, _ = self.store.list(DEPLOYMENTS)
        replicasets, _ = self.store.list(REPLICASETS)
        uids = {d["metadata"]["uid"] for d in deployments}
        for rs in replicasets:
            # Garbage collection: a ReplicaSet whose Deployment is gone goes with it.
            refs = rs["metadata"].get("ownerReferences") or []
            if refs and not any(r.get("uid") in uids for r in refs):
                self._delete_quietly(rs)
        for deployment in deployments:
            self._sync(deployment, [rs for rs in replicasets if owned_by(rs, deployment)])

    def _delete_quietly(self, rs: dict) -> None:
        try:
            self.store.delete(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"])
        except StoreError:
            pass

    def _sync(self, dep: dict, owned: list[dict]) -> None:
        meta, spec = dep["metadata"], dep.get("spec") or {}
        ns = meta["namespace"]
        template = spec.get("template") or {}
        hash_ = template_hash(template)
        desired = int(spec.get("replicas", 1))
        revisions = [int((rs["metadata"].get("annotations") or {}).get(REVISION, "0")) for rs in owned]
        new = next((rs for rs in owned if (rs["metadata"].get("labels") or {}).get(HASH_LABEL) == hash_), None)
        top = max(revisions, default=0)
        started_rollout = ""
        if new is None:
            new = self._create_replicaset(dep, template, hash_, top + 1)
            owned.append(new)
            # getNewReplicaSet (sync.go): a new ReplicaSet restarts the progress clock.
            started_rollout = f'Created new replica set "{new["metadata"]["name"]}"'
        elif int((new["metadata"].get("annotations") or {}).get(REVISION, "0")) < top:
            # Rolling back to an older template reuses its ReplicaSet under a new revision.
            def bump(rs: dict) -> None:
                rs["metadata"].setdefault("annotations", {})[REVISION] = str(top + 1)

            new = self.store.mutate(REPLICASETS, ns, new["metadata"]["name"], bump) or new
        olds = [rs for rs in owned if rs["metadata"]["uid"] != new["metadata"]["uid"]]
        new_available = int((new.get("status") or {}).get("availableReplicas", 0))
        recreate = (spec.get("strategy") or {}).get("type") == "Recreate"
        if recreate:
            old_pods_left = sum(int((rs.get("status") or {}).get("replicas", 0)) for rs in olds)
            self._scale_all(olds, lambda _: 0)
            if old_pods_left == 0:
                self._scale(new, desired)
        else:
            self._scale(new, desired)
            # maxUnavailable 0: old pods keep serving until new ones are available.
            keep = max(0, desired - new_available)
            self._scale_all(sorted(olds, key=_revision, reverse=True), _Allocator(keep))
        self._write_status(dep, new, olds, desired, started_rollout)

    def _create_replicaset(self, dep: dict, template: dict, hash_: str, revision: int) -> dict:
        meta = dep["metadata"]
        labels = {**((template.get("metadata") or {}).get("labels") or {}), HASH_LABEL: hash_}
        selector = dict(((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})
        selector[HASH_LABEL] = hash_
        pod_template = json.loads(json.dumps(template))
        pod_template.setdefault("metadata", {})["labels"] = labels
        rs = {"metadata": {"name": f"{meta['name']}-{hash_}", "namespace": meta["namespace"], "labels": labels,
                           "annotations": {REVISION: str(revision)}, "ownerReferences": [owner_ref(dep)]},
              "spec": {"replicas": 0, "selector": {"matchLabels": selector}, "template": pod_template}}
        try:
            return self.store.create(REPLICASETS, rs)
        except StoreError:
            return self.store.get(REPLICASETS, meta["namespace"], rs["metadata"]["name"])

    def _scale(self, rs: dict, replicas: int) -> None:
        if (rs.get("spec") or {}).get("replicas") != replicas:
            self.store.mutate(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"],
                              lambda o: o["spec"].update(replicas=replicas))

    def _scale_all(self, replicasets: list[dict], share: Any) -> None:
        for rs in replicasets:
            self._scale(rs, share(int((rs.get("spec") or {}).get("replicas", 0))))

    def _write_status(self, dep: dict, new: dict, olds: list[dict], desired: int, started_rollout: str) -> None:
        meta, spec = dep["metadata"], dep.get("spec") or {}
        uid = meta["uid"]
        current = self.store.find(REPLICASETS, new["metadata"]["namespace"], new["metadata"]["name"]) or new
        every = [current] + [self.store.find(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"]) or rs
                             for rs in olds]

        def total(rs_list: list[dict], key: str) -> int:
            return sum(int((rs.get("status") or {}).get(key, 0)) for rs in rs_list)

        cur = current.get("status") or {}
        updated = int(cur.get("replicas", 0))
        replicas = total(every, "replicas")
        ready, available = total(every, "readyReplicas"), total(every, "availableReplicas")
        deadline = progress_deadline(spec)
        rs_name = current["metadata"]["name"]
        revision = (current["metadata"].get("annotations") or {}).get(REVISION)
        now = time.monotonic()

        def change(obj: dict) -> None:
            if revision:
                obj["metadata"].setdefault("annotations", {})[REVISION] = revision
            st = obj.setdefault("status", {})
            old = dict(st)
            st.update(observedGeneration=obj["metadata"].get("generation", 1), replicas=replicas,
                      updatedReplicas=updated, readyReplicas=ready, availableReplicas=available,
                      unavailableReplicas=max(0, desired - available))
            conds = st.setdefault("conditions", [])
            if available >= desired:
                set_condition(conds, "Available", "True", "MinimumReplicasAvailable",
                              "Deployment has minimum availability.")
            else:
                set_condition(conds, "Available", "False", "MinimumReplicasUnavailable",
                              "Deployment does not have minimum availability.")
            stored = next((c for c in conds if c.get("type") == "Progressing"), None)
            if deadline is not None and (started_rollout or stored is None):
                stored = self._set_progressing(conds, uid, "True", NEW_RS_CREATED if started_rollout else FOUND_NEW_RS,
                                               started_rollout or f'Found new replica set "{rs_name}"', now)
            idle = now - self._last_progress.get(uid, now)
            verdict = progressing_condition(old, st, desired, obj["metadata"].get("generation", 1), rs_name,
                                            deadline, stored, idle)
            if verdict is None:
                return
            if verdict["touch"] or stored is None or (stored.get("status"), stored.get("reason")) != \
                    (verdict["status"], verdict["reason"]):
                self._set_progressing(conds, uid, verdict["status"], verdict["reason"], verdict["message"], now)

        self.store.mutate(DEPLOYMENTS, meta["namespace"], meta["name"], change)

    def _set_progressing(self, conds: list[dict], uid: str, status: str, reason: str, message: str,
                         now: float) -> dict:
        """Write Progressing with a fresh lastUpdateTime; lastTransitionTime kept while it stays True."""
        stamp = now_rfc3339()
        stored = next((c for c in conds if c.get("type") == "Progressing"), None)
        keep = stored is not None and stored.get("status") == status == "True"
        cond = {"type": "Progressing", "status": status, "reason": reason, "message": message,
                "lastUpdateTime": stamp,
                "lastTransitionTime": stored.get("lastTransitionTime", stamp) if keep and stored else stamp}
        if stored is not None:
            conds.remove(stored)
        conds.append(cond)
        self._last_progress[uid] = now
        return cond


class _Allocator:
    """Hands out `budget` replicas to old ReplicaSets, newest first."""

    def __init__(self, budget: int):
        self.left = budget

    def __call__(self, current: int) -> int:
        give = min(current, self.left)
        self.left -= give
        return give


def _revision(rs: dict) -> int:
    value = (rs["metadata"].get("annotations") or {}).get(REVISION, "0")
    return int(value) if value.isdigit() else 0


class ReplicaSetController:
    def __init__(self, store: Store):
        self.store = store

    def tick(self) -> None:
        replicasets, _ = self.store.list(REPLICASETS)
        pods, _ = self.store.list(PODS)
        uids = {rs["metadata"]["uid"] for rs in replicasets}
        for pod in pods:
            # The garbage collector's part for ReplicaSet pods only: StatefulSet and DaemonSet
            # pods have owners of their own kinds, which their controllers look after.
            refs = [r for r in pod["metadata"].get("ownerReferences") or [] if r.get("kind") == "ReplicaSet"]
            if refs and not any(r.get("uid") in uids for r in refs) and not terminating(pod):
                self._terminate(pod)
        for rs in replicasets:
            self._sync(rs, [p for p in pods if owned_by(p, rs)])

    def _sync(self, rs: dict, pods: list[dict]) -> None:
        meta, spec = rs["metadata"], rs.get("spec") or {}
        want = int(spec.get("replicas", 1))
        active = [p for p in pods if not terminating(p)]
        selector = Selector.from_match_labels((spec.get("selector") or {}).get("matchLabels") or {})
        if len(active) < want:
            for _ in range(want - len(active)):
                self._create_pod(rs)
        elif len(active) > want:
            # Unready pods go first, then the newest, as the ReplicaSet controller prefers.
            victims = sorted(active, key=lambda p: (pod_ready(p), p["metadata"]["creationTimestamp"]))
            for pod in victims[: len(active) - want]:
                self._terminate(pod)
        pods_now = [p for p in self.store.list(PODS, meta["namespace"], selector)[0]
                    if owned_by(p, rs) and not terminating(p)]
        ready = sum(1 for p in pods_now if pod_ready(p))

        def change(obj: dict) -> None:
            obj["status"] = {"replicas": len(pods_now), "fullyLabeledReplicas": len(pods_now),
                             "readyReplicas": ready, "availableReplicas": ready,
                             "observedGeneration": obj["metadata"].get("generation", 1)}

        self.store.mutate(REPLICASETS, meta["namespace"], meta["name"], change)

    def _create_pod(self, rs: dict) -> None:
        pod = new_pod(rs["spec"].get("template") or {}, f"{rs['metadata']['name']}-{random_suffix()}",
                      rs["metadata"]["namespace"], rs, {})
        try:
            self.store.create(PODS, pod)
        except StoreError:
            pass  # name clash: the next tick tries again with another suffix

    def _terminate(self, pod: dict) -> None:
        terminate_pod(self.store, pod)
