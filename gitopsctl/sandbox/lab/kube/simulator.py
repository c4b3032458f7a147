"""The cluster behind the API emulator: Flux's two controllers, kube-controller-manager's
Deployment, ReplicaSet, StatefulSet, DaemonSet and EndpointSlice controllers, a kubelet on the
test Docker engine, kube-proxy.

Two loops, each woken by any store change (or every 100 ms): one plays Flux (git and
kustomize builds are slow, they must not stall rollouts), the other the controller
manager and the kubelet's pod sync. Without a Docker client pods stay Pending, which
is enough for tests of the API layer and the Flux logic.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gitopsctl.sandbox.lab.kube.controllers import DeploymentController, ReplicaSetController
from gitopsctl.sandbox.lab.kube.endpointslices import EndpointSliceController
from gitopsctl.sandbox.lab.kube.fluxsim import DEPENDENCY_REQUEUE_INTERVAL, HEALTH_CHECK_TIMEOUT_FLOOR, KustomizeController
from gitopsctl.sandbox.lab.kube.kubelet import Kubelet
from gitopsctl.sandbox.lab.kube.proxy import ServiceProxy
from gitopsctl.sandbox.lab.kube.serviceregistry import ServiceRegistry
from gitopsctl.sandbox.lab.kube.sourcectl import SourceController
from gitopsctl.sandbox.lab.kube.store import Store
from gitopsctl.sandbox.lab.kube.workloads import WorkloadControllers


def random_network() -> str:
    """A /24 of loopback per simulator ("127.X.Y."), so concurrent test sessions get distinct
    pod and cluster IPs."""
    return f"127.{secrets.randbelow(150) + 100}.{secrets.randbelow(256)}."


@dataclass(frozen=True)
class FluxOptions:
    """kustomize-controller's flags and feature gates, Flux's defaults unless a test scales them.

    cancel_health_check_on_new_revision: the CancelHealthCheckOnNewRevision gate (off in Flux,
    on in this homelab: clusters/homelab/flux-system/kustomization.yaml).
    dependency_requeue_interval: --requeue-dependency (30s).
    health_check_timeout_floor: the 30s minimum of GetTimeout; tests that wait out a
    shortened spec.timeout lower it.
    health_check_poll_interval: how often the health check reads the objects (5s).
    fail_fast: off only with the DisableFailFastBehavior gate.
    """

    cancel_health_check_on_new_revision: bool = False
    dependency_requeue_interval: float = DEPENDENCY_REQUEUE_INTERVAL
    health_check_timeout_floor: float = HEALTH_CHECK_TIMEOUT_FLOOR
    health_check_poll_interval: float = 5.0
    fail_fast: bool = True


class ClusterSimulator:
    def __init__(self, store: Store, workdir: Path, *, docker_client: Any = None,
                 registry_auth: dict[str, dict[str, str]] | None = None, restart_backoff: float = 0.5,
                 max_backoff: float = 5.0, sim_id: str | None = None, flux: FluxOptions | None = None):
        self.store = store
        self.sim_id = sim_id or secrets.token_hex(4)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        network = random_network()
        self.registry = ServiceRegistry(store, network).install()  # the API server's Service allocators
        self.services = ServiceProxy(store)
        self.endpoint_slices = EndpointSliceController(store)
        self.source = SourceController(store)
        flux = flux or FluxOptions()
        self.kustomize = KustomizeController(
            store, self.workdir,
            cancel_health_check_on_new_revision=flux.cancel_health_check_on_new_revision,
            dependency_requeue_interval=flux.dependency_requeue_interval,
            health_check_timeout_floor=flux.health_check_timeout_floor,
            health_check_poll_interval=flux.health_check_poll_interval, fail_fast=flux.fail_fast)
        self.deployments = DeploymentController(store)
        self.replicasets = ReplicaSetController(store)
        self.errors: list[str] = []  # controller and kubelet failures; tests assert it stays empty
        self.workloads = WorkloadControllers(store)  # StatefulSets, DaemonSets
        self.kubelet = (Kubelet(store, docker_client, sim_id=self.sim_id, pod_network=network,
                                registry_auth=registry_auth, restart_backoff=restart_backoff,
                                max_backoff=max_backoff, errors=self.errors) if docker_client is not None else None)
        self._halt = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def cancel_health_check_on_new_revision(self) -> bool:
        return self.kustomize.cancel_health_check_on_new_revision

    @cancel_health_check_on_new_revision.setter
    def cancel_health_check_on_new_revision(self, value: bool) -> None:
        self.kustomize.cancel_health_check_on_new_revision = value

    def start(self) -> "ClusterSimulator":
        flux = [self.source.tick, self.kustomize.tick]
        manager = [self.deployments.tick, self.replicasets.tick, self.workloads.tick, self.endpoint_slices.tick,
                   self.services.tick]
        if self.kubelet is not None:
            manager.append(self.kubelet.tick)
        for name, ticks in (("flux", flux), ("controller-manager", manager)):
            thread = threading.Thread(target=self._loop, args=(ticks,), name=f"kube-sim-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _loop(self, ticks: list[Callable[[], None]]) -> None:
        seen = -1
        while not self._halt.is_set():
            for tick in ticks:
                try:
                    tick()
                except Exception as exc:  # noqa: BLE001 - a controller bug must show, not kill the loop
                    self.errors.append(f"{tick.__qualname__}: {type(exc).__name__}: {exc}")
                    del self.errors[:-50]
            seen = self.store.wait_for_change(seen, 0.1)
            self._halt.wait(0.02)  # coalesce bursts of writes into one pass

    def logs(self, namespace: str, pod: str, container: str | None, previous: bool) -> str | None:
        return self.kubelet.logs(namespace, pod, container, previous) if self.kubelet else None

    def stop(self) -> None:
        self._halt.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        if self.kubelet is not None:
            self.kubelet.stop()
        self.services.stop()
