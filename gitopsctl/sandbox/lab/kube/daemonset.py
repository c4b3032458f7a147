"""The DaemonSet controller: one pod per node, replaced node by node on a template change.

Follows kubernetes/kubernetes pkg/controller/daemon (daemon_controller.go manage /
podsShouldBeOnNode / updateDaemonSetStatus, update.go rollingUpdate for maxSurge 0,
util/daemonset_util.go for the pod's labels and node affinity). The emulator has one node,
the kubelet's `emulator-node`, and no taints, so every DaemonSet wants exactly one pod:

* a node without a daemon pod gets one, at the newest ControllerRevision (labels
  `controller-revision-hash` = that revision's hash and `pod-template-generation`); a pod that
  failed is deleted and made again; of two on one node the oldest stays.
* RollingUpdate (maxSurge 0, the default): an old pod that is not available is deleted at once;
  an available one only while fewer than `maxUnavailable` nodes are unavailable. OnDelete:
  pods change only when deleted by someone else.
* status: desiredNumberScheduled, currentNumberScheduled, updatedNumberScheduled, numberReady,
  numberAvailable, numberUnavailable, numberMisscheduled, observedGeneration.
Not simulated: maxSurge > 0, minReadySeconds, node selectors and taints (one node fits all).
"""

from __future__ import annotations

import math

from gitopsctl.sandbox.lab.kube import history
from gitopsctl.sandbox.lab.kube.controllers import owned_by, pod_ready, terminating
from gitopsctl.sandbox.lab.kube.podcontrol import new_pod, owner_ref, random_suffix, terminate_pod
from gitopsctl.sandbox.lab.kube.store import CONTROLLER_REVISIONS, DAEMONSETS, PODS, Store, StoreError

NODES = ("emulator-node",)  # the simulator's one kubelet (kubelet.Kubelet's node_name)
TEMPLATE_GENERATION_LABEL = "pod-template-generation"


def _node_of(pod: dict) -> str:
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return spec["nodeName"]
    terms = ((((spec.get("affinity") or {}).get("nodeAffinity") or {})
              .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or [])
    for term in terms:
        for field in term.get("matchFields") or []:
            if field.get("key") == "metadata.name" and field.get("values"):
                return field["values"][0]
    return ""


def _node_affinity(node: str) -> dict:
    # ReplaceDaemonSetPodNodeNameNodeAffinity: the scheduler, not the controller, binds the pod.
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}}


def max_unavailable(ds: dict, desired: int) -> int:
    value = ((((ds.get("spec") or {}).get("updateStrategy") or {}).get("rollingUpdate") or {})
             .get("maxUnavailable", 1))
    if isinstance(value, str) and value.endswith("%"):
        # intstr.GetScaledValueFromIntOrPercent with roundUp, as update.go asks for it.
        return math.ceil(desired * int(value[:-1]) / 100)
    return int(value)


class DaemonSetController:
    def __init__(self, store: Store):
        self.store = store

    def tick(self) -> None:
        sets, _ = self.store.list(DAEMONSETS)
        pods, _ = self.store.list(PODS)
        uids = {d["metadata"]["uid"] for d in sets}
        self._collect_garbage(pods, uids)
        for ds in sets:
            self._sync(ds, [p for p in pods if owned_by(p, ds)])

    def _collect_garbage(self, pods: list[dict], uids: set[str]) -> None:
        for pod in pods:
            refs = [r for r in pod["metadata"].get("ownerReferences") or [] if r.get("kind") == "DaemonSet"]
            if refs and not any(r.get("uid") in uids for r in refs) and not terminating(pod):
                terminate_pod(self.store, pod)
        revisions, _ = self.store.list(CONTROLLER_REVISIONS)
        for rev in revisions:
            refs = [r for r in rev["metadata"].get("ownerReferences") or [] if r.get("kind") == "DaemonSet"]
            if refs and not any(r.get("uid") in uids for r in refs):
                try:
                    self.store.delete(CONTROLLER_REVISIONS, rev["metadata"]["namespace"], rev["metadata"]["name"])
                except StoreError:
                    pass

    def _sync(self, ds: dict, pods: list[dict]) -> None:
        spec = ds.get("spec") or {}
        selector = dict((spec.get("selector") or {}).get("matchLabels") or {})
        revision, revisions = history.update_revision(self.store, ds, owner_ref(ds), selector)
        hash_ = revision["metadata"]["labels"][history.HASH_LABEL]
        by_node = {node: sorted([p for p in pods if _node_of(p) == node and not terminating(p)],
                                key=lambda p: p["metadata"]["creationTimestamp"]) for node in NODES}
        for node, on_node in by_node.items():
            self._manage(ds, node, on_node, revision, hash_)
        strategy = spec.get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            self._rolling_update(ds, hash_)
        self._write_status(ds, hash_)
        live = {revision["metadata"]["name"]} | {
            f"{ds['metadata']['name']}-{(p['metadata'].get('labels') or {}).get(history.HASH_LABEL, '')}" for p in pods}
        history.truncate_history(self.store, revisions, live, int(spec.get("revisionHistoryLimit", 10)))

    def _manage(self, ds: dict, node: str, on_node: list[dict], revision: dict, hash_: str) -> None:
        """podsShouldBeOnNode: one running daemon pod on the node, made again when it failed."""
        running = []
        for pod in on_node:
            if (pod.get("status") or {}).get("phase") == "Failed":
                terminate_pod(self.store, pod)
            else:
                running.append(pod)
        if not running:
            self._create(ds, node, revision, hash_)
        for extra in running[1:]:
            terminate_pod(self.store, extra)  # more than one on a node: the oldest stays

    def _create(self, ds: dict, node: str, revision: dict, hash_: str) -> None:
        template = dict(((revision.get("data") or {}).get("spec") or {}).get("template") or {})
        template.pop("$patch", None)
        labels = {history.HASH_LABEL: hash_,
                  TEMPLATE_GENERATION_LABEL: str(ds["metadata"].get("generation", 1))}
        for _ in range(3):  # a name clash is retried with another suffix, bounded
            pod = new_pod(template, f"{ds['metadata']['name']}-{random_suffix()}", ds["metadata"]["namespace"],
                          ds, labels, {"affinity": _node_affinity(node)})
            try:
                self.store.create(PODS, pod)
                return
            except StoreError:
                continue

    def _rolling_update(self, ds: dict, hash_: str) -> None:
        """update.go rollingUpdate with maxSurge 0: delete old pods within the unavailability budget."""
        pods = [p for p in self.store.list(PODS, ds["metadata"]["namespace"])[0]
                if owned_by(p, ds) and not terminating(p)]
        budget = max_unavailable(ds, len(NODES))
        unavailable = sum(1 for node in NODES
                          if not any(_node_of(p) == node and pod_ready(p) for p in pods))
        for node in NODES:
            old = [p for p in pods if _node_of(p) == node
                   and (p["metadata"].get("labels") or {}).get(history.HASH_LABEL) != hash_]
            for pod in old:
                if not pod_ready(pod):
                    terminate_pod(self.store, pod)  # not serving anyway: replace it at once
                elif unavailable < budget:
                    terminate_pod(self.store, pod)
                    unavailable += 1

    def _write_status(self, ds: dict, hash_: str) -> None:
        meta = ds["metadata"]
        pods = [p for p in self.store.list(PODS, meta["namespace"])[0] if owned_by(p, ds) and not terminating(p)]
        generation = str(meta.get("generation", 1))
        current = ready = updated = 0
        for node in NODES:
            on_node = sorted([p for p in pods if _node_of(p) == node], key=lambda p: p["metadata"]["creationTimestamp"])
            if not on_node:
                continue
            current += 1
            pod = on_node[0]
            labels = pod["metadata"].get("labels") or {}
            ready += pod_ready(pod)
            # util.IsPodUpdated: the template generation or the revision hash matches.
            updated += labels.get(history.HASH_LABEL) == hash_ or labels.get(TEMPLATE_GENERATION_LABEL) == generation
        desired = len(NODES)

        def change(obj: dict) -> None:
            obj.setdefault("status", {}).update(
                desiredNumberScheduled=desired, currentNumberScheduled=current, numberMisscheduled=0,
                numberReady=ready, numberAvailable=ready, numberUnavailable=max(0, desired - ready),
                updatedNumberScheduled=updated, observedGeneration=obj["metadata"].get("generation", 1))

        self.store.mutate(DAEMONSETS, meta["namespace"], meta["name"], change)
