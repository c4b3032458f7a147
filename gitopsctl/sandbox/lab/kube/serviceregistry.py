"""What kube-apiserver's Service storage does to a written Service: defaults, the cluster IP and
node port allocators, and the update rules that keep an allocation.

* Defaults: kubernetes/kubernetes pkg/apis/core/v1/defaults.go SetDefaults_Service (type
  ClusterIP, sessionAffinity None, ports' protocol TCP and targetPort = port,
  internalTrafficPolicy Cluster, externalTrafficPolicy Cluster for NodePort/LoadBalancer).
* Allocation: pkg/registry/core/service/storage/alloc.go. A cluster IP for every type but
  ExternalName, unless spec.clusterIP is "None" (headless); an explicit address is honoured when
  it lies in the block and is free, else 422. clusterIPs mirrors clusterIP; ipFamilies [IPv4] and
  ipFamilyPolicy SingleStack, the single-stack IPv4 cluster's answer. NodePort and LoadBalancer
  ports without a nodePort get one from 30000-32767 (pkg/registry/core/service/portallocator).
* Update: pkg/registry/core/service/storage/storage.go patchAllocatedValues copies the allocated
  values into an update that leaves them out (so a re-apply without clusterIP keeps it); a
  different primary cluster IP is 422 `spec.clusterIPs[0]: Invalid value: [...]: may not change
  once set` (pkg/apis/core/validation/validation.go validateUpgradeDowngradeClusterIPs).

The block is the simulator's loopback /24, .200 to .254 (the pods have .2 to .199): the
addresses kube-proxy (proxy.py) listens on. The first one goes to the `kubernetes` Service,
as the first address of a service CIDR does on a cluster.
"""

from __future__ import annotations

import json
from typing import Any

from gitopsctl.sandbox.lab.kube.admission import RequestRefused
from gitopsctl.sandbox.lab.kube.store import ENDPOINT_SLICES, SERVICES, Store, StoreError

FIRST_HOST, LAST_HOST = 200, 254
NODE_PORTS = range(30000, 32768)


class ServiceRegistry:
    def __init__(self, store: Store, network: str):
        self.store = store
        self.network = network  # "127.X.Y."

    def install(self) -> "ServiceRegistry":
        self.store.write_hooks[SERVICES] = self.prepare
        return self

    @property
    def block(self) -> str:
        return f"{self.network}{FIRST_HOST}-{self.network}{LAST_HOST}"

    def in_block(self, ip: str) -> bool:
        host = ip[len(self.network):] if ip.startswith(self.network) else ""
        return host.isdigit() and FIRST_HOST <= int(host) <= LAST_HOST

    def prepare(self, service: dict, old: dict | None) -> None:
        spec = service.setdefault("spec", {})
        if not isinstance(spec, dict):
            return
        _defaults(spec)
        if old is not None:
            self._keep_allocations(service, spec, old.get("spec") or {})
        if spec["type"] == "ExternalName":
            for name in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
                spec.pop(name, None)
            return
        self._cluster_ip(service, spec, old)
        if spec["type"] in ("NodePort", "LoadBalancer"):
            self._node_ports(service, spec)

    def _keep_allocations(self, service: dict, spec: dict, old_spec: dict) -> None:
        if old_spec.get("clusterIP") and not spec.get("clusterIP") and not spec.get("clusterIPs"):
            for name in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
                if name in old_spec:
                    spec.setdefault(name, old_spec[name])
        elif spec.get("clusterIP") and spec.get("clusterIP") != (spec.get("clusterIPs") or [None])[0]:
            spec["clusterIPs"] = [spec["clusterIP"]]  # storage.go normalizeClusterIPs: clusterIP wins
        old_ips, new_ips = old_spec.get("clusterIPs") or [], spec.get("clusterIPs") or []
        if old_ips and new_ips and old_ips[0] != new_ips[0] and spec["type"] != "ExternalName" \
                and old_spec.get("type") != "ExternalName":
            raise _invalid(service, "spec.clusterIPs[0]", new_ips, "may not change once set")
        old_node_ports = {(p.get("name"), p.get("protocol")): p.get("nodePort")
                          for p in old_spec.get("ports") or [] if isinstance(p, dict)}
        for port in spec.get("ports") or []:
            if isinstance(port, dict) and not port.get("nodePort"):
                kept = old_node_ports.get((port.get("name"), port.get("protocol")))
                if kept and spec["type"] in ("NodePort", "LoadBalancer"):
                    port["nodePort"] = kept

    def _cluster_ip(self, service: dict, spec: dict, old: dict | None) -> None:
        wanted = spec.get("clusterIP") or (spec.get("clusterIPs") or [""])[0]
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        if wanted == "None":
            spec["clusterIP"], spec["clusterIPs"] = "None", ["None"]
            return
        if old is not None and wanted and wanted == ((old.get("spec") or {}).get("clusterIPs") or [""])[0]:
            spec["clusterIP"], spec["clusterIPs"] = wanted, [wanted]
            return
        used = self._used_ips(service)
        if wanted:
            if not self.in_block(wanted):
                raise _invalid(service, "spec.clusterIPs", [wanted],
                               f"failed to allocate IP {wanted}: provided IP ({wanted}) is not in the valid "
                               f"range. The range of valid IPs is {self.block}")
            if wanted in used:
                raise _invalid(service, "spec.clusterIPs", [wanted],
                               f"failed to allocate IP {wanted}: provided IP is already allocated")
        else:
            free = [f"{self.network}{h}" for h in range(FIRST_HOST, LAST_HOST + 1)
                    if f"{self.network}{h}" not in used]
            if not free:
                raise StoreError(500, "InternalError", f"failed to allocate a serviceIP: range is full "
                                                       f"({self.block}); delete a Service to free one")
            # The kubernetes Service takes the first address; the others from the next ones
            # (alloc.go takes a random free address from the upper part of the range first).
            wanted = free[0]
        spec["clusterIP"], spec["clusterIPs"] = wanted, [wanted]

    def _node_ports(self, service: dict, spec: dict) -> None:
        used = {p.get("nodePort") for other in self._others(service)
                for p in (other.get("spec") or {}).get("ports") or [] if isinstance(p, dict)}
        for port in spec.get("ports") or []:
            if isinstance(port, dict) and not port.get("nodePort"):
                port["nodePort"] = next(n for n in NODE_PORTS if n not in used)
                used.add(port["nodePort"])

    def _others(self, service: dict) -> list[dict]:
        meta = service.get("metadata") or {}
        me = (meta.get("namespace") or "default", meta.get("name"))
        items, _ = self.store.list(SERVICES)
        return [s for s in items if (s["metadata"]["namespace"], s["metadata"]["name"]) != me]

    def _used_ips(self, service: dict) -> set[str]:
        return {ip for other in self._others(service) for ip in (other.get("spec") or {}).get("clusterIPs") or []}

    def ensure_kubernetes_service(self, api_host: str, api_port: int) -> None:
        """The `kubernetes` Service and its EndpointSlice in namespace default, pointing at the API
        server, as kube-apiserver keeps them (pkg/controlplane/controller/kubernetesservice and
        pkg/controlplane/reconcilers: port 443 named https to the server's own address:port)."""
        if self.store.find(SERVICES, "default", "kubernetes") is None:
            self.store.create(SERVICES, {
                "metadata": {"name": "kubernetes", "namespace": "default",
                             "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"type": "ClusterIP", "sessionAffinity": "None",
                         "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": api_port}]}})
        slice_ = {"metadata": {"name": "kubernetes", "namespace": "default",
                               "labels": {"kubernetes.io/service-name": "kubernetes"}},
                  "addressType": "IPv4",
                  "endpoints": [{"addresses": [api_host], "conditions": {"ready": True}}],
                  "ports": [{"name": "https", "port": api_port, "protocol": "TCP"}]}
        if self.store.find(ENDPOINT_SLICES, "default", "kubernetes") is None:
            self.store.create(ENDPOINT_SLICES, slice_)
        else:
            self.store.mutate(ENDPOINT_SLICES, "default", "kubernetes",
                              lambda obj: obj.update({k: v for k, v in slice_.items() if k != "metadata"}))


def _defaults(spec: dict) -> None:
    spec["type"] = spec.get("type") or "ClusterIP"
    if not spec.get("sessionAffinity"):
        spec["sessionAffinity"] = "None"
    for port in spec.get("ports") or []:
        if not isinstance(port, dict):
            continue
        if not port.get("protocol"):
            port["protocol"] = "TCP"
        if port.get("targetPort") in (None, 0, "") and "port" in port:
            port["targetPort"] = port["port"]
    if spec["type"] != "ExternalName":
        spec.setdefault("internalTrafficPolicy", "Cluster")
    if spec["type"] in ("NodePort", "LoadBalancer") and not spec.get("externalTrafficPolicy"):
        spec["externalTrafficPolicy"] = "Cluster"
    if spec["type"] == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)


def _invalid(service: dict, field: str, value: Any, message: str) -> RequestRefused:
    name = (service.get("metadata") or {}).get("name", "")
    shown = f"{field}: Invalid value: {json.dumps(value)}: {message}"
    return RequestRefused(422, "Invalid", f'Service "{name}" is invalid: {shown}',
                          {"name": name, "group": "", "kind": "Service",
                           "causes": [{"reason": "FieldValueInvalid", "message": f"Invalid value: "
                                       f"{json.dumps(value)}: {message}", "field": field}]})
