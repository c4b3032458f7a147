"""The service environment variables the kubelet gives a container it starts.

kubernetes/kubernetes pkg/kubelet/kubelet_pods.go getServiceEnvVarMap: the Services with a
cluster IP of the pod's namespace (only when spec.enableServiceLinks is not false) and the
`kubernetes` Service of namespace default (always); pkg/kubelet/envvars/envvars.go
FromServices: per Service NAME (upper case, '-' -> '_') NAME_SERVICE_HOST, NAME_SERVICE_PORT
(the first port), NAME_SERVICE_PORT_<PORT NAME> per named port, and the Docker link
variables NAME_PORT (first port), NAME_PORT_<port>_<PROTO>, ..._PROTO, ..._PORT, ..._ADDR.
makeEnvironmentVariables runs for every container the kubelet creates, restarts included, so
a restarted container sees the Services of its restart time; the container's own env wins.
"""

from __future__ import annotations

from gitopsctl.sandbox.lab.kube.store import SERVICES, Store


def _has_cluster_ip(service: dict) -> bool:
    ip = (service.get("spec") or {}).get("clusterIP")
    return bool(ip) and ip != "None"


def from_services(services: list[dict]) -> dict[str, str]:
    env: dict[str, str] = {}
    for service in services:
        spec = service.get("spec") or {}
        ports = [p for p in spec.get("ports") or [] if isinstance(p, dict)]
        if not _has_cluster_ip(service) or not ports:
            continue
        name = service["metadata"]["name"].upper().replace("-", "_")
        ip = spec["clusterIP"]
        env[f"{name}_SERVICE_HOST"] = ip
        env[f"{name}_SERVICE_PORT"] = str(ports[0]["port"])
        for port in ports:
            if port.get("name"):
                env[f"{name}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(port["port"])
        for index, port in enumerate(ports):
            protocol = port.get("protocol") or "TCP"
            url = f"{protocol.lower()}://{ip}:{port['port']}"
            if index == 0:
                env[f"{name}_PORT"] = url
            prefix = f"{name}_PORT_{port['port']}_{protocol.upper()}"
            env[prefix] = url
            env[f"{prefix}_PROTO"] = protocol.lower()
            env[f"{prefix}_PORT"] = str(port["port"])
            env[f"{prefix}_ADDR"] = ip
    return env


def service_environment(store: Store, pod: dict) -> dict[str, str]:
    namespace = pod["metadata"]["namespace"]
    links = (pod.get("spec") or {}).get("enableServiceLinks") is not False
    services, _ = store.list(SERVICES)
    chosen: dict[str, dict] = {}
    masters = []
    for service in services:
        if not _has_cluster_ip(service):
            continue
        ns, name = service["metadata"]["namespace"], service["metadata"]["name"]
        if ns == "default" and name == "kubernetes":
            masters.append(service)
        elif ns == namespace and links:
            chosen[name] = service
    for service in masters:
        chosen.setdefault(service["metadata"]["name"], service)
    return from_services(sorted(chosen.values(), key=lambda s: s["metadata"]["name"]))
