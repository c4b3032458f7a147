"""The EndpointSlice controller (kube-controller-manager): one set of slices per Service that
has a selector, listing the matching pods.

Follows kubernetes/kubernetes pkg/controller/endpointslice/endpointslice_controller.go (which
Services it syncs) and staging/src/k8s.io/endpointslice (reconciler.go, utils.go):
* only Services with a selector; a selectorless Service's slices belong to whoever wrote them
  (here: git, through Flux) and are never touched;
* a pod is listed when it has a podIP and has not finished (ShouldPodBeInEndpoints, terminating
  pods included); conditions: serving = pod Ready, terminating = deletionTimestamp set,
  ready = serving and not terminating, or always when spec.publishNotReadyAddresses
  (podToEndpoint); targetRef to the pod, nodeName;
* ports per Service port, resolved from targetPort: a number as is, a name through the pod's
  container ports (podutil.FindPort); a pod whose port does not resolve is left out of that
  port set. Pods with the same resolved ports share a slice; a Service without pods keeps one
  placeholder slice with no endpoints and no ports;
* slices are named `<service>-<5 random chars>` (generateName), labelled
  kubernetes.io/service-name and endpointslice.kubernetes.io/managed-by, the Service's own labels
  copied, and owned by the Service; slices of a deleted Service go (the garbage collector's work).
Not done: the 100-endpoint split (maxEndpointsPerSlice), topology hints, IPv6.
"""

from __future__ import annotations

import secrets
import string

from gitopsctl.sandbox.lab.kube.selectors import Selector
from gitopsctl.sandbox.lab.kube.store import ENDPOINT_SLICES, PODS, SERVICES, Store, StoreError, now_rfc3339

SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
CONTROLLER = "endpointslice-controller.k8s.io"
_SUFFIX = string.ascii_lowercase + string.digits


def _pod_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _find_port(pod: dict, service_port: dict) -> int | None:
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = service_port.get("protocol") or "TCP"
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                return int(port["containerPort"])
    return None


def _endpoint(pod: dict, publish_not_ready: bool) -> dict:
    serving = _pod_ready(pod)
    terminating = bool((pod.get("metadata") or {}).get("deletionTimestamp"))
    ready = publish_not_ready or (serving and not terminating)
    endpoint = {"addresses": [pod["status"]["podIP"]],
                "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
                "targetRef": {"kind": "Pod", "namespace": pod["metadata"]["namespace"],
                              "name": pod["metadata"]["name"], "uid": pod["metadata"].get("uid", "")}}
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        endpoint["nodeName"] = node
    return endpoint


def desired_slices(service: dict, pods: list[dict]) -> dict[tuple, dict]:
    """Resolved port set (as a hashable key) -> {ports, endpoints} for one Service."""
    spec = service.get("spec") or {}
    publish = bool(spec.get("publishNotReadyAddresses"))
    groups: dict[tuple, dict] = {}
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        if not (pod.get("status") or {}).get("podIP") or (pod.get("status") or {}).get("phase") in ("Succeeded",
                                                                                                      "Failed"):
            continue
        ports = []
        for service_port in spec.get("ports") or []:
            number = _find_port(pod, service_port)
            if number is None:
                continue
            port = {"name": service_port.get("name", ""), "port": number,
                    "protocol": service_port.get("protocol") or "TCP"}
            if service_port.get("appProtocol"):
                port["appProtocol"] = service_port["appProtocol"]
            ports.append(port)
        key = tuple(sorted((p["name"], p["port"], p["protocol"]) for p in ports))
        group = groups.setdefault(key, {"ports": ports, "endpoints": []})
        group["endpoints"].append(_endpoint(pod, publish))
    if not groups:
        groups[()] = {"ports": None, "endpoints": []}
    return groups


def _key(slice_: dict) -> tuple:
    return tuple(sorted((p.get("name", ""), p.get("port"), p.get("protocol") or "TCP")
                        for p in slice_.get("ports") or []))


class EndpointSliceController:
    def __init__(self, store: Store):
        self.store = store

    def tick(self) -> None:
        services, _ = self.store.list(SERVICES)
        slices, _ = self.store.list(ENDPOINT_SLICES, selector=Selector.parse(f"{MANAGED_BY}={CONTROLLER}"))
        owned: dict[tuple[str, str], list[dict]] = {}
        for slice_ in slices:
            labels = slice_["metadata"].get("labels") or {}
            owned.setdefault((slice_["metadata"]["namespace"], labels.get(SERVICE_NAME, "")), []).append(slice_)
        synced = set()
        for service in services:
            selector = (service.get("spec") or {}).get("selector")
            if not selector or (service.get("spec") or {}).get("type") == "ExternalName":
                continue
            key = (service["metadata"]["namespace"], service["metadata"]["name"])
            synced.add(key)
            self._sync(service, owned.get(key, []))
        for key, leftovers in owned.items():
            if key not in synced:  # the Service is gone or lost its selector
                for slice_ in leftovers:
                    self._delete(slice_)

    def _sync(self, service: dict, existing: list[dict]) -> None:
        namespace = service["metadata"]["namespace"]
        pods, _ = self.store.list(PODS, namespace, Selector.from_match_labels(service["spec"]["selector"]))
        wanted = desired_slices(service, pods)
        by_key = {}
        for slice_ in existing:
            if _key(slice_) in wanted and _key(slice_) not in by_key:
                by_key[_key(slice_)] = slice_
            else:
                self._delete(slice_)
        for key, content in wanted.items():
            labels = {**(service["metadata"].get("labels") or {}),
                      SERVICE_NAME: service["metadata"]["name"], MANAGED_BY: CONTROLLER}
            current = by_key.get(key)
            if current is None:
                self.store.create(ENDPOINT_SLICES, {
                    "metadata": {"name": self._name(service), "namespace": namespace, "labels": labels,
                                 "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": now_rfc3339()},
                                 "generateName": f"{service['metadata']['name'][:57]}-",
                                 "ownerReferences": [_owner(service)]},
                    "addressType": "IPv4", **content})
                continue

            def change(obj: dict, content: dict = content, labels: dict = labels) -> None:
                obj["endpoints"], obj["ports"] = content["endpoints"], content["ports"]
                obj["metadata"]["labels"] = labels

            self.store.mutate(ENDPOINT_SLICES, namespace, current["metadata"]["name"], change)

    def _name(self, service: dict) -> str:
        prefix = f"{service['metadata']['name'][:57]}-"
        while True:
            name = prefix + "".join(secrets.choice(_SUFFIX) for _ in range(5))
            if self.store.find(ENDPOINT_SLICES, service["metadata"]["namespace"], name) is None:
                return name

    def _delete(self, slice_: dict) -> None:
        try:
            self.store.delete(ENDPOINT_SLICES, slice_["metadata"]["namespace"], slice_["metadata"]["name"])
        except StoreError:
            pass


def _owner(service: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "name": service["metadata"]["name"],
            "uid": service["metadata"].get("uid", ""), "controller": True, "blockOwnerDeletion": True}
