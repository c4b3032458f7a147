"""kube-proxy: forwards <clusterIP>:<port> (and 127.0.0.1:<nodePort>) to a Service's endpoints,
read from Services and EndpointSlices only, as kube-proxy reads them.

kubernetes/kubernetes pkg/proxy/endpointslicecache.go: the endpoints of service port N are the
addresses of the slices labelled kubernetes.io/service-name=<service> in its namespace whose
`ports` hold an entry named N with the same protocol (an unnamed service port matches an unnamed
slice port), forwarded to that entry's port. Whether a selector or a user wrote the slice does
not matter, so an address outside the cluster (a process on 127.0.0.1) is an endpoint like a
pod. pkg/proxy/topology.go CategorizeEndpoints: ready endpoints (conditions.ready unset counts
as ready) take the traffic; when there are none, serving and terminating ones do.
With no endpoint a connection is refused at once (kube-proxy installs a REJECT rule).

`tick()` (the controller-manager loop) opens a listener per Service address and closes those of
Services gone (or turned ExternalName, which kube-proxy ignores); each connection reads the
store, so a changed slice or Service takes effect for the next connection. TCP only.
"""

from __future__ import annotations

import itertools
import socket
import struct
import threading

from gitopsctl.sandbox.lab.kube.selectors import Selector
from gitopsctl.sandbox.lab.kube.store import ENDPOINT_SLICES, SERVICES, Store

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def endpoints_for(store: Store, namespace: str, service: str, port_name: str,
                  protocol: str = "TCP") -> list[tuple[str, int]]:
    """(address, port) of every endpoint kube-proxy would program for this service port."""
    slices, _ = store.list(ENDPOINT_SLICES, namespace, Selector.parse(f"{SERVICE_NAME_LABEL}={service}"))
    ready, fallback = [], []
    for slice_ in slices:
        if slice_.get("addressType") != "IPv4":
            continue  # an IPv4 proxier skips IPv6 and FQDN slices
        port = next((p for p in slice_.get("ports") or []
                     if (p.get("name") or "") == port_name and (p.get("protocol") or "TCP") == protocol
                     and p.get("port")), None)
        if port is None:
            continue
        for endpoint in slice_.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            is_ready = conditions.get("ready") is not False
            serving = conditions.get("serving", conditions.get("ready")) is not False
            for address in endpoint.get("addresses") or []:
                if is_ready:
                    ready.append((address, int(port["port"])))
                elif serving and conditions.get("terminating"):
                    fallback.append((address, int(port["port"])))
    return ready or fallback


class _Listener(threading.Thread):
    def __init__(self, proxy: "ServiceProxy", route: tuple[str, str, str, str], address: tuple[str, int]):
        super().__init__(name=f"kube-proxy-{address[0]}:{address[1]}", daemon=True)
        self.proxy = proxy
        self.route = route  # (namespace, service, port name, protocol)
        self.address = address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(address)
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self._halt = threading.Event()
        self._rr = itertools.count()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        with self.sock:
            while not self._halt.is_set():
                try:
                    client, _ = self.sock.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        endpoints = endpoints_for(self.proxy.store, *self.route)
        if not endpoints:
            _reset(client)
            return
        ip, port = endpoints[next(self._rr) % len(endpoints)]
        try:
            upstream = socket.create_connection((ip, port), timeout=3)
        except OSError:
            _reset(client)
            return
        upstream.settimeout(None)
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()
        _pump(client, upstream)


def _reset(client: socket.socket) -> None:
    """Close with a RST, what a REJECT --reject-with tcp-reset does to the client's connection."""
    try:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    client.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def service_addresses(service: dict) -> dict[tuple[str, int], tuple[str, str, str, str]]:
    """Every address kube-proxy serves for one Service -> (namespace, name, port name, protocol)."""
    spec = service.get("spec") or {}
    cluster_ip = spec.get("clusterIP")
    if spec.get("type") == "ExternalName" or not cluster_ip or cluster_ip == "None":
        return {}
    out = {}
    for port in spec.get("ports") or []:
        if (port.get("protocol") or "TCP") != "TCP" or not port.get("port"):
            continue
        route = (service["metadata"]["namespace"], service["metadata"]["name"], port.get("name") or "", "TCP")
        out[(cluster_ip, int(port["port"]))] = route
        if port.get("nodePort"):
            out[("127.0.0.1", int(port["nodePort"]))] = route
    return out


class ServiceProxy:
    def __init__(self, store: Store):
        self.store = store
        self._listeners: dict[tuple[str, int], _Listener] = {}
        self._lock = threading.Lock()
        self.errors: list[str] = []  # addresses that could not be bound, with the reason

    def cluster_ip(self, namespace: str, name: str) -> str | None:
        """The Service's spec.clusterIP; None before it exists (or for a headless one)."""
        service = self.store.find(SERVICES, namespace, name)
        ip = ((service or {}).get("spec") or {}).get("clusterIP")
        return ip if ip and ip != "None" else None

    def tick(self) -> None:
        services, _ = self.store.list(SERVICES)
        wanted: dict[tuple[str, int], tuple[str, str, str, str]] = {}
        for service in services:
            wanted.update(service_addresses(service))
        with self._lock:
            for address in [a for a in self._listeners if a not in wanted]:
                self._listeners.pop(address).stop()
            for address, route in wanted.items():
                current = self._listeners.get(address)
                if current is not None:
                    current.route = route
                    continue
                try:
                    listener = _Listener(self, route, address)
                except OSError as exc:
                    message = f"Service {route[0]}/{route[1]} on {address[0]}:{address[1]}: {exc}"
                    if message not in self.errors:
                        self.errors.append(message)
                    continue
                self._listeners[address] = listener
                listener.start()

    def stop(self) -> None:
        with self._lock:
            listeners = list(self._listeners.values())
            self._listeners.clear()
        for listener in listeners:
            listener.stop()
        for listener in listeners:
            listener.join(timeout=2)
