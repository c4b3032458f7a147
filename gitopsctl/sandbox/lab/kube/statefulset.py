"""The StatefulSet controller: pods with stable names `<set>-<ordinal>`, one revision at a time.

Follows kubernetes/kubernetes pkg/controller/statefulset (stateful_set_control.go
updateStatefulSet, processReplica, processCondemned, the rolling update loop and
completeRollingUpdate; stateful_set_utils.go for names, labels and newVersionedStatefulSetPod):

* OrderedReady (the default): pods are created in ordinal order, each only once every lower
  one is Running and Ready; removed from the highest ordinal down, one at a time, only while
  every other pod is healthy. Parallel: all created and removed at once.
* RollingUpdate with `partition`: from the highest ordinal down to the partition, one pod at a
  time is deleted and recreated at the update revision, the next only once it is Running and
  Ready again; ordinals below the partition keep the current revision. OnDelete: pods are only
  recreated (at the update revision) when something else deletes them.
* Pods carry `controller-revision-hash` = the revision's name, `statefulset.kubernetes.io/
  pod-name` and `apps.kubernetes.io/pod-index`; the status counts replicas, ready, available,
  current and updated pods, and currentRevision becomes updateRevision once every pod is
  updated and ready.
Not simulated: volumeClaimTemplates (no volumes here), maxUnavailable (an alpha gate in 1.33),
`spec.ordinals.start`.
"""

from __future__ import annotations

import re
import time

from gitopsctl.sandbox.lab.kube import history
from gitopsctl.sandbox.lab.kube.controllers import owned_by, pod_ready, terminating
from gitopsctl.sandbox.lab.kube.podcontrol import new_pod, owner_ref, terminate_pod
from gitopsctl.sandbox.lab.kube.store import CONTROLLER_REVISIONS, PODS, STATEFULSETS, Store, StoreError

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
# A deleted pod's name comes back only after a pause, as in a real cluster, where graceful
# termination and the informers' round trip stand between the delete and the new pod.
RECREATE_AFTER = 1.0


def ordinal(pod: dict, set_name: str) -> int:
    match = re.fullmatch(rf"{re.escape(set_name)}-(\d+)", pod["metadata"]["name"])
    return int(match.group(1)) if match else -1


def running_and_ready(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and pod_ready(pod)


def pod_revision(pod: dict) -> str:
    return (pod["metadata"].get("labels") or {}).get(history.HASH_LABEL, "")


def _template_of(revision: dict) -> dict:
    template = dict(((revision.get("data") or {}).get("spec") or {}).get("template") or {})
    template.pop("$patch", None)
    return template


class StatefulSetController:
    def __init__(self, store: Store):
        self.store = store
        self._gone_since: dict[tuple[str, str], float] = {}  # (namespace, pod) -> when first seen gone
        self._known: set[tuple[str, str]] = set()  # pod names that have existed

    def tick(self) -> None:
        sets, _ = self.store.list(STATEFULSETS)
        pods, _ = self.store.list(PODS)
        uids = {s["metadata"]["uid"] for s in sets}
        self._collect_garbage(pods, uids)
        now = time.monotonic()
        present = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in pods}
        for key in self._known - present:
            self._gone_since.setdefault(key, now)
        for key in present:
            self._gone_since.pop(key, None)
        self._known |= present
        for sts in sets:
            self._sync(sts, [p for p in pods if owned_by(p, sts) and ordinal(p, sts["metadata"]["name"]) >= 0], now)

    def _collect_garbage(self, pods: list[dict], uids: set[str]) -> None:
        """The garbage collector's part: pods and revisions of a deleted StatefulSet go with it."""
        for pod in pods:
            refs = [r for r in pod["metadata"].get("ownerReferences") or [] if r.get("kind") == "StatefulSet"]
            if refs and not any(r.get("uid") in uids for r in refs) and not terminating(pod):
                terminate_pod(self.store, pod)
        revisions, _ = self.store.list(CONTROLLER_REVISIONS)
        for rev in revisions:
            refs = [r for r in rev["metadata"].get("ownerReferences") or [] if r.get("kind") == "StatefulSet"]
            if refs and not any(r.get("uid") in uids for r in refs):
                try:
                    self.store.delete(CONTROLLER_REVISIONS, rev["metadata"]["namespace"], rev["metadata"]["name"])
                except StoreError:
                    pass

    def _sync(self, sts: dict, pods: list[dict], now: float) -> None:
        meta, spec = sts["metadata"], sts.get("spec") or {}
        selector = dict((spec.get("selector") or {}).get("matchLabels") or {})
        update, revisions = history.update_revision(self.store, sts, owner_ref(sts), selector)
        current = next((r for r in revisions if r["metadata"]["name"] == (sts.get("status") or {}).get(
            "currentRevision")), None) or update
        replicas = int(spec.get("replicas", 1))
        slots: list[dict | None] = [None] * replicas
        condemned = []
        for pod in pods:
            index = ordinal(pod, meta["name"])
            if index < replicas:
                slots[index] = pod
            else:
                condemned.append(pod)
        condemned.sort(key=lambda p: ordinal(p, meta["name"]), reverse=True)
        monotonic = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
        if not self._process_replicas(sts, slots, current, update, monotonic, now) \
                and not self._process_condemned(slots, condemned, monotonic):
            self._roll(sts, slots, update)
        self._write_status(sts, current, update)
        live = {current["metadata"]["name"], update["metadata"]["name"]} | {pod_revision(p) for p in pods}
        history.truncate_history(self.store, revisions, live, int(spec.get("revisionHistoryLimit", 10)))

    def _process_replicas(self, sts: dict, slots: list[dict | None], current: dict, update: dict,
                          monotonic: bool, now: float) -> bool:
        """processReplica over every ordinal; True when OrderedReady must wait."""
        ns = sts["metadata"]["namespace"]
        for index, pod in enumerate(slots):
            if pod is not None and (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded"):
                # A pod that ended is deleted and made again, whatever its exit code.
                if not terminating(pod):
                    terminate_pod(self.store, pod)
                if monotonic:
                    return True
                continue
            if pod is None:
                name = f"{sts['metadata']['name']}-{index}"
                gone = self._gone_since.get((ns, name))
                if gone is None or now - gone >= RECREATE_AFTER:
                    slots[index] = self._create(sts, index, current, update)
                if monotonic:
                    return True
                continue
            if monotonic and (terminating(pod) or not running_and_ready(pod)):
                return True
        return False

    def _process_condemned(self, slots: list[dict | None], condemned: list[dict], monotonic: bool) -> bool:
        """processCondemned, highest ordinal first; True when OrderedReady must wait."""
        unhealthy = [p for p in slots + condemned[::-1] if p is None or not running_and_ready(p) or terminating(p)]
        first_unhealthy = unhealthy[0] if unhealthy else None
        for pod in condemned:
            if terminating(pod):
                if monotonic:
                    return True
                continue
            if monotonic and not running_and_ready(pod) and pod is not first_unhealthy:
                return True
            terminate_pod(self.store, pod)
            if monotonic:
                return True
        return False

    def _roll(self, sts: dict, slots: list[dict | None], update: dict) -> None:
        """The rolling update: the highest ordinal not at the update revision goes first."""
        strategy = (sts.get("spec") or {}).get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            return  # OnDelete
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        for index in range(len(slots) - 1, partition - 1, -1):
            pod = slots[index]
            if pod is None:
                return
            if pod_revision(pod) != update["metadata"]["name"] and not terminating(pod):
                terminate_pod(self.store, pod)
                return
            if not running_and_ready(pod) or terminating(pod):
                return

    def _create(self, sts: dict, index: int, current: dict, update: dict) -> dict | None:
        spec = sts.get("spec") or {}
        strategy = spec.get("updateStrategy") or {}
        partition = (strategy.get("rollingUpdate") or {}).get("partition")
        # newVersionedStatefulSetPod: below the partition a pod is made at the current revision.
        revision = current if strategy.get("type", "RollingUpdate") == "RollingUpdate" and partition is not None \
            and index < int(partition) else update
        name = f"{sts['metadata']['name']}-{index}"
        pod = new_pod(_template_of(revision), name, sts["metadata"]["namespace"], sts,
                      {history.HASH_LABEL: revision["metadata"]["name"], POD_NAME_LABEL: name,
                       POD_INDEX_LABEL: str(index)},
                      {"hostname": name, **({"subdomain": spec["serviceName"]} if spec.get("serviceName") else {})})
        try:
            return self.store.create(PODS, pod)
        except StoreError:
            return self.store.find(PODS, sts["metadata"]["namespace"], name)

    def _write_status(self, sts: dict, current: dict, update: dict) -> None:
        meta = sts["metadata"]
        pods = [p for p in self.store.list(PODS, meta["namespace"])[0]
                if owned_by(p, sts) and ordinal(p, meta["name"]) >= 0]
        cur_name, upd_name = current["metadata"]["name"], update["metadata"]["name"]
        alive = [p for p in pods if not terminating(p)]
        ready = sum(1 for p in pods if running_and_ready(p))
        status = {"replicas": len(pods), "readyReplicas": ready, "availableReplicas": ready,
                  "currentReplicas": sum(1 for p in alive if pod_revision(p) == cur_name),
                  "updatedReplicas": sum(1 for p in alive if pod_revision(p) == upd_name),
                  "currentRevision": cur_name, "updateRevision": upd_name}
        strategy = ((sts.get("spec") or {}).get("updateStrategy") or {}).get("type", "RollingUpdate")
        if strategy == "RollingUpdate" and status["updatedReplicas"] == status["replicas"] == ready:
            status.update(currentReplicas=status["updatedReplicas"], currentRevision=upd_name)

        def change(obj: dict) -> None:
            st = obj.setdefault("status", {})
            st.update(status, observedGeneration=obj["metadata"].get("generation", 1),
                      collisionCount=int(st.get("collisionCount") or 0))

        self.store.mutate(STATEFULSETS, meta["namespace"], meta["name"], change)
