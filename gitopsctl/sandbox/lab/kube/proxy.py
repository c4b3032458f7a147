"""kube-proxy: a Service's cluster IP (and its NodePort) forward to its ready pods.

Every Service the Kustomization applies gets a cluster IP from the simulator's
loopback block and listens on <clusterIP>:<port>; a port with a nodePort also
listens on 127.0.0.1:<nodePort>. Only pods whose Ready condition is True receive
connections, as with a real Service, so a health URL sees the new version only once
it is ready and the old one until then. With no ready pod a connection is closed.
"""

from __future__ import annotations

import itertools
import socket
import threading
from typing import Any

from gitopsctl.sandbox.lab.kube.selectors import Selector
from gitopsctl.sandbox.lab.kube.store import PODS, Store


def _ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or []) \
        and not pod["metadata"].get("deletionTimestamp")


class _Listener(threading.Thread):
    def __init__(self, proxy: "ServiceProxy", namespace: str, selector: dict, address: tuple[str, int],
                 target: Any):
        super().__init__(name=f"kube-proxy-{address[0]}:{address[1]}", daemon=True)
        self.proxy, self.namespace, self.address = proxy, namespace, address
        self.selector, self.target = selector, target
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(address)
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self._halt = threading.Event()
        self._rr = itertools.count()

    def stop(self) -> None:
        self._halt.set()

    def endpoints(self) -> list[tuple[str, int]]:
        pods, _ = self.proxy.store.list(PODS, self.namespace, Selector.from_match_labels(self.selector))
        out = []
        for pod in pods:
            ip = (pod.get("status") or {}).get("podIP")
            port = self._resolve_port(pod)
            if ip and port and _ready(pod):
                out.append((ip, port))
        return out

    def _resolve_port(self, pod: dict) -> int | None:
        if isinstance(self.target, int) or (isinstance(self.target, str) and self.target.isdigit()):
            return int(self.target)
        for container in (pod.get("spec") or {}).get("containers") or []:
            for port in container.get("ports") or []:
                if port.get("name") == self.target:
                    return int(port["containerPort"])
        return None

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
        endpoints = self.endpoints()
        if not endpoints:
            client.close()
            return
        ip, port = endpoints[next(self._rr) % len(endpoints)]
        try:
            upstream = socket.create_connection((ip, port), timeout=3)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()
        _pump(client, upstream)


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


class ServiceProxy:
    def __init__(self, store: Store, network: str = "127.0.0."):
        self.store = store
        self.network = network  # "127.X.Y." prefix; cluster IPs are .200 to .254 of it
        self._listeners: dict[tuple[str, int], _Listener] = {}
        self._cluster_ips: dict[tuple[str, str], str] = {}
        self.errors: list[str] = []

    def cluster_ip(self, namespace: str, name: str) -> str | None:
        """The address a Service got when it was applied, like spec.clusterIP."""
        return self._cluster_ips.get((namespace, name))

    def apply(self, namespace: str, service: dict) -> None:
        spec = service.get("spec") or {}
        selector = spec.get("selector") or {}
        key = (namespace, (service.get("metadata") or {}).get("name", ""))
        if key not in self._cluster_ips:
            if len(self._cluster_ips) >= 55:
                self.errors.append(f"no cluster IP left for Service {key[0]}/{key[1]}")
                return
            self._cluster_ips[key] = f"{self.network}{200 + len(self._cluster_ips)}"
        for port in spec.get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            addresses = [(self._cluster_ips[key], int(port["port"]))] if port.get("port") else []
            if port.get("nodePort"):
                addresses.append(("127.0.0.1", int(port["nodePort"])))
            for address in addresses:
                current = self._listeners.get(address)
                if current is not None:
                    current.selector, current.target, current.namespace = selector, target, namespace
                    continue
                try:
                    listener = _Listener(self, namespace, selector, address, target)
                except OSError as exc:
                    self.errors.append(f"Service {key[0]}/{key[1]} on {address[0]}:{address[1]}: {exc}")
                    continue
                self._listeners[address] = listener
                listener.start()

    def stop(self) -> None:
        for listener in self._listeners.values():
            listener.stop()
        for listener in self._listeners.values():
            listener.join(timeout=2)
        self._listeners.clear()
