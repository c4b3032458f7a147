"""What kubectl asks before it asks for objects: API discovery, and lists as tables.

kubectl resolves `kubectl get pods` through discovery (/api, /apis and one resource
list per group version) and then asks for the list as a meta.k8s.io/v1 Table, whose
columns the server chooses. The columns here follow what a real API server and the
Flux CRDs print, so the sandbox looks like a cluster when explored by hand.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable

from gitopsctl import kubeapis
from gitopsctl.sandbox.lab.kube.store import (CONTROLLER_REVISIONS, DAEMONSETS, DEPLOYMENTS, ENDPOINT_SLICES,
                                              GIT_REPOSITORIES, KUSTOMIZATIONS, PODS, REPLICASETS, SERVICES,
                                              STATEFULSETS, Kind)

# Discovery lists exactly gitopsctl.kubeapis' table (Flux 2.9 on Kubernetes 1.33, plus
# sealed-secrets), whether or not the emulator stores the kind: a real cluster's discovery is
# what kubectl maps kinds with, so an unserved version fails in kubectl as it does on a cluster
# ("no matches for kind ... in version ..."). Document shapes: k8s.io/apimachinery
# pkg/apis/meta/v1/types.go (APIVersions, APIGroupList, APIResourceList).


def api_versions(server_address: str) -> dict:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def api_group_list() -> dict:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        {"name": name, "versions": [_group_version(name, v) for v in versions],
         "preferredVersion": _group_version(name, versions[0])}
        for name, versions in kubeapis.group_versions() if name]}


def api_group(group: str) -> dict | None:
    listed = next((g for g in api_group_list()["groups"] if g["name"] == group), None)
    return {"kind": "APIGroup", "apiVersion": "v1", **listed} if listed else None


def api_resource_list(group: str, version: str) -> dict | None:
    served = kubeapis.resources_in(group, version)
    if not served:
        return None
    resources = []
    for resource in served:
        entry = {"name": resource.plural, "singularName": resource.singular, "namespaced": resource.namespaced,
                 "kind": resource.kind, "verbs": list(resource.verbs)}
        if resource.short_names:
            entry["shortNames"] = list(resource.short_names)
        if resource.categories:
            entry["categories"] = list(resource.categories)
        resources.append(entry)
        resources += [{"name": f"{resource.plural}/{sub}", "singularName": "", "namespaced": resource.namespaced,
                       "kind": resource.kind, "verbs": list(verbs)} for sub, verbs in resource.subresources]
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": resources}


def installed_crds() -> list[dict]:
    """The CustomResourceDefinitions a cluster with Flux 2.9 and sealed-secrets holds, in the
    fields clients read from a list (kubectl's CRD finder reads spec.group and spec.names.kind,
    kubernetes/cli-runtime pkg/resource/crd_finder.go). No schemas: the emulator validates with
    gitopsctl.kubeschema."""
    by_name: dict[str, dict] = {}
    for resource in kubeapis.RESOURCES:
        if resource.provider == "kubernetes":
            continue
        name = f"{resource.plural}.{resource.group}"
        crd = by_name.setdefault(name, {
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": name},
            "spec": {"group": resource.group, "scope": "Namespaced" if resource.namespaced else "Cluster",
                     "names": {"kind": resource.kind, "listKind": f"{resource.kind}List",
                               "plural": resource.plural, "singular": resource.singular,
                               **({"shortNames": list(resource.short_names)} if resource.short_names else {}),
                               **({"categories": list(resource.categories)} if resource.categories else {})},
                     "versions": []}})
        crd["spec"]["versions"].append({"name": resource.version, "served": True,
                                        "storage": not crd["spec"]["versions"]})
    return list(by_name.values())


def wants_table(accept: str) -> bool:
    """kubectl get lists ask for `application/json;as=Table;v=v1;g=meta.k8s.io` first."""
    return any("as=Table" in part and "g=meta.k8s.io" in part for part in accept.split(","))


def table(kind: Kind, items: list[dict], resource_version: int | str, include_object: str | None,
          with_columns: bool = True) -> dict:
    """A list as a Table. A watch sends the column definitions with its first event only."""
    columns = _COLUMNS.get(kind, _DEFAULT_COLUMNS)
    now = datetime.now(timezone.utc)
    rows = []
    for obj in items:
        row: dict[str, Any] = {"cells": [cell(obj, now) for _, _, cell in columns]}
        if include_object != "None":
            row["object"] = obj if include_object == "Object" else {
                "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata") or {}}
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": str(resource_version)},
            "columnDefinitions": [{"name": name, "type": kind_of, "format": "name" if name == "Name" else "",
                                   "description": "", "priority": 0}
                                  for name, kind_of, _ in columns] if with_columns else [],
            "rows": rows}


def _group_version(group: str, version: str) -> dict:
    return {"groupVersion": f"{group}/{version}", "version": version}


# -- cells ---------------------------------------------------------------------

def _name(obj: dict, now: datetime) -> str:
    return (obj.get("metadata") or {}).get("name", "")


def _age(obj: dict, now: datetime) -> str:
    stamp = (obj.get("metadata") or {}).get("creationTimestamp")
    try:
        created = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except (TypeError, ValueError):
        return "<unknown>"
    seconds = max(0, int((now - created).total_seconds()))
    minutes, hours = seconds // 60, seconds // 3600
    if seconds < 120:  # the steps of kubectl's human-readable durations
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    return f"{hours}h" if hours < 48 else f"{hours // 24}d"


def _status(obj: dict) -> dict:
    return obj.get("status") or {}


def _pod_ready(obj: dict, now: datetime) -> str:
    statuses = _status(obj).get("containerStatuses") or []
    total = len(((obj.get("spec") or {}).get("containers")) or statuses)
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def _pod_phase(obj: dict, now: datetime) -> str:
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    for status in _status(obj).get("containerStatuses") or []:
        state = status.get("state") or {}
        reason = (state.get("waiting") or state.get("terminated") or {}).get("reason")
        if reason:
            return reason
    return _status(obj).get("phase") or "Pending"


def _pod_restarts(obj: dict, now: datetime) -> int:
    return sum(int(s.get("restartCount") or 0) for s in _status(obj).get("containerStatuses") or [])


def _replicas(obj: dict) -> int:
    return int((obj.get("spec") or {}).get("replicas", 1) or 0)


def _deploy_ready(obj: dict, now: datetime) -> str:
    return f"{_status(obj).get('readyReplicas') or 0}/{_replicas(obj)}"


def _field(name: str) -> Callable[[dict, datetime], int]:
    return lambda obj, now: int(_status(obj).get(name) or 0)


def _desired(obj: dict, now: datetime) -> int:
    return _replicas(obj)


def _ready_condition(part: str) -> Callable[[dict, datetime], str]:
    def cell(obj: dict, now: datetime) -> str:
        ready = next((c for c in _status(obj).get("conditions") or [] if c.get("type") == "Ready"), {})
        return str(ready.get(part, "Unknown" if part == "status" else ""))
    return cell


def _node_selector(obj: dict, now: datetime) -> str:
    selector = ((((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get("nodeSelector") or {})
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or "<none>"


def _controller(obj: dict, now: datetime) -> str:
    ref = next((r for r in (obj.get("metadata") or {}).get("ownerReferences") or [] if r.get("controller")), None)
    return f"{ref['kind'].lower()}.apps/{ref['name']}" if ref else "<none>"


def _revision(obj: dict, now: datetime) -> int:
    return int(obj.get("revision") or 0)


def _git_url(obj: dict, now: datetime) -> str:
    return (obj.get("spec") or {}).get("url", "")


# pkg/printers/internalversion/printers.go printService, getServiceExternalIP, makePortString.
def _service_type(obj: dict, now: datetime) -> str:
    return (obj.get("spec") or {}).get("type", "ClusterIP")


def _service_cluster_ip(obj: dict, now: datetime) -> str:
    ips = (obj.get("spec") or {}).get("clusterIPs") or []
    return ips[0] if ips else "<none>"


def _service_external_ip(obj: dict, now: datetime) -> str:
    spec = obj.get("spec") or {}
    external = list(spec.get("externalIPs") or [])
    if spec.get("type") == "ExternalName":
        return spec.get("externalName", "")
    if spec.get("type") == "LoadBalancer":
        ingress = [i.get("ip") or i.get("hostname") for i in
                   ((_status(obj).get("loadBalancer") or {}).get("ingress") or [])]
        found = [i for i in ingress if i] + external
        return ",".join(found) if found else "<pending>"
    return ",".join(external) if external else "<none>"


def _service_ports(obj: dict, now: datetime) -> str:
    ports = []
    for port in (obj.get("spec") or {}).get("ports") or []:
        protocol = port.get("protocol", "TCP")
        node = f":{port['nodePort']}" if port.get("nodePort") else ""
        ports.append(f"{port.get('port')}{node}/{protocol}")
    return ",".join(ports) if ports else "<none>"


def _first_three(values: list[str]) -> str:
    # printers.go listWithMoreString, max 3.
    shown = ",".join(values[:3])
    return f"{shown} + {len(values) - 3} more..." if len(values) > 3 else shown


def _slice_address_type(obj: dict, now: datetime) -> str:
    return str(obj.get("addressType", ""))


def _slice_ports(obj: dict, now: datetime) -> str:
    # printers.go formatDiscoveryPorts.
    ports = obj.get("ports") or []
    if not ports:
        return "<unset>"
    return _first_three([str(p["port"]) if p.get("port") is not None else (p.get("name") or "*") for p in ports])


def _slice_endpoints(obj: dict, now: datetime) -> str:
    # printers.go formatDiscoveryEndpoints.
    addresses = [a for e in obj.get("endpoints") or [] for a in e.get("addresses") or []]
    return _first_three(addresses) if addresses else "<unset>"


_Column = tuple[str, str, Callable[[dict, datetime], Any]]
_DEFAULT_COLUMNS: list[_Column] = [("Name", "string", _name), ("Age", "string", _age)]
_COLUMNS: dict[Kind, list[_Column]] = {
    PODS: [("Name", "string", _name), ("Ready", "string", _pod_ready), ("Status", "string", _pod_phase),
           ("Restarts", "integer", _pod_restarts), ("Age", "string", _age)],
    DEPLOYMENTS: [("Name", "string", _name), ("Ready", "string", _deploy_ready),
                  ("Up-to-date", "integer", _field("updatedReplicas")),
                  ("Available", "integer", _field("availableReplicas")), ("Age", "string", _age)],
    REPLICASETS: [("Name", "string", _name), ("Desired", "integer", _desired),
                  ("Current", "integer", _field("replicas")), ("Ready", "integer", _field("readyReplicas")),
                  ("Age", "string", _age)],
    # kubernetes/kubernetes pkg/printers/internalversion/printers.go: statefulSetColumnDefinitions,
    # daemonSetColumnDefinitions, controllerRevisionColumnDefinitions (the non-wide columns).
    STATEFULSETS: [("Name", "string", _name), ("Ready", "string", _deploy_ready), ("Age", "string", _age)],
    DAEMONSETS: [("Name", "string", _name), ("Desired", "integer", _field("desiredNumberScheduled")),
                 ("Current", "integer", _field("currentNumberScheduled")), ("Ready", "integer", _field("numberReady")),
                 ("Up-to-date", "integer", _field("updatedNumberScheduled")),
                 ("Available", "integer", _field("numberAvailable")), ("Node Selector", "string", _node_selector),
                 ("Age", "string", _age)],
    CONTROLLER_REVISIONS: [("Name", "string", _name), ("Controller", "string", _controller),
                           ("Revision", "integer", _revision), ("Age", "string", _age)],
    GIT_REPOSITORIES: [("Name", "string", _name), ("URL", "string", _git_url), ("Age", "string", _age),
                       ("Ready", "string", _ready_condition("status")),
                       ("Status", "string", _ready_condition("message"))],
    # printers.go serviceColumnDefinitions and endpointSliceColumnDefinitions (non-wide).
    SERVICES: [("Name", "string", _name), ("Type", "string", _service_type),
               ("Cluster-IP", "string", _service_cluster_ip), ("External-IP", "string", _service_external_ip),
               ("Port(s)", "string", _service_ports), ("Age", "string", _age)],
    ENDPOINT_SLICES: [("Name", "string", _name), ("AddressType", "string", _slice_address_type),
                      ("Ports", "string", _slice_ports), ("Endpoints", "string", _slice_endpoints),
                      ("Age", "string", _age)],
    KUSTOMIZATIONS: [("Name", "string", _name), ("Age", "string", _age),
                     ("Ready", "string", _ready_condition("status")),
                     ("Status", "string", _ready_condition("message"))],
}
