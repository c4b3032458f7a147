"""A Kubernetes API emulator and the cluster simulator behind it (see README.md here).

    with KubeEmulator(tmp_path, docker_client=client, registry_auth=auth) as kube:
        kube.add_git_repository("flux-system", url=remote.url, branch="main")
        kube.add_kustomization("apps", path="./clusters/homelab/apps", wait=True, timeout="30s")
        ... point gitopsctl at kube.kubeconfig ...

Nothing here is imported by the CLI; docker is used through the client passed in.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from gitopsctl.sandbox.lab.kube.server import ApiServer, Faults
from gitopsctl.sandbox.lab.kube.serviceregistry import ServiceRegistry
from gitopsctl.sandbox.lab.kube.simulator import ClusterSimulator, FluxOptions, random_network
from gitopsctl.sandbox.lab.kube.store import GIT_REPOSITORIES, KUSTOMIZATIONS, Store

__all__ = ["KubeEmulator", "ApiServer", "ClusterSimulator", "Faults", "FluxOptions", "Store"]


class KubeEmulator:
    """API server + simulator + kubeconfig, owned by the caller; stop() removes every container it ran."""

    def __init__(self, workdir: Path, *, docker_client: Any = None,
                 registry_auth: dict[str, dict[str, str]] | None = None, tls: bool = True,
                 restart_backoff: float = 0.5, max_backoff: float = 5.0, simulate: bool = True,
                 flux: FluxOptions | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.token = secrets.token_urlsafe(24)
        self.store = Store()
        self.simulator = ClusterSimulator(self.store, self.workdir / "sim", docker_client=docker_client,
                                          registry_auth=registry_auth, restart_backoff=restart_backoff,
                                          max_backoff=max_backoff, flux=flux) if simulate else None
        # The API server allocates cluster IPs with or without a cluster behind it.
        self.registry = self.simulator.registry if self.simulator else ServiceRegistry(self.store,
                                                                                       random_network()).install()
        self.api = ApiServer(self.store, token=self.token, tls=tls,
                             log_provider=self.simulator.logs if self.simulator else None)
        self.kubeconfig = self.workdir / "kubeconfig"

    @property
    def faults(self) -> Faults:
        return self.api.faults

    def start(self) -> "KubeEmulator":
        self.api.start()
        self.api.write_kubeconfig(self.kubeconfig)
        self.registry.ensure_kubernetes_service(self.api.host, self.api.port)
        if self.simulator is not None:
            self.simulator.start()
        return self

    def stop(self) -> None:
        self.api.stop()
        if self.simulator is not None:
            self.simulator.stop()

    def __enter__(self) -> "KubeEmulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def service_address(self, name: str, namespace: str = "default") -> str | None:
        """The cluster IP a Service got (reachable from the host); None before it is applied."""
        return self.simulator.services.cluster_ip(namespace, name) if self.simulator else None

    def add_git_repository(self, name: str = "flux-system", *, url: str, branch: str = "main",
                           namespace: str = "flux-system", interval: str = "1m") -> dict:
        return self.store.create(GIT_REPOSITORIES, {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"url": url, "ref": {"branch": branch}, "interval": interval}})

    def add_kustomization(self, name: str, *, path: str, source: str = "flux-system",
                          namespace: str = "flux-system", interval: str = "10m", wait: bool = False,
                          timeout: str | None = None, prune: bool = True, target_namespace: str | None = None,
                          health_checks: list[dict] | None = None, depends_on: list[str] | None = None,
                          retry_interval: str | None = None) -> dict:
        spec: dict[str, Any] = {"interval": interval, "path": path, "prune": prune, "wait": wait,
                                "sourceRef": {"kind": "GitRepository", "name": source}}
        if timeout:
            spec["timeout"] = timeout
        if target_namespace:
            spec["targetNamespace"] = target_namespace
        if health_checks:
            spec["healthChecks"] = health_checks
        if depends_on:
            spec["dependsOn"] = [{"name": dep} for dep in depends_on]
        if retry_interval:
            spec["retryInterval"] = retry_interval
        return self.store.create(KUSTOMIZATIONS, {"metadata": {"name": name, "namespace": namespace}, "spec": spec})
