"""The production TargetSet: the targets gitopsctl.yaml names, built on first use.

One Target per service. The services of one VM target share one VMTarget: its sync
converges every compose service it owns at once, so applying one of them runs the sync
and the others read their part of that run. On a Kubernetes target each service's Target
follows that service's workloads; Flux's objects are the target's.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Mapping

from gitopsctl.preload import Preload
from gitopsctl.targets import Target


class ConfiguredTargets:
    """TargetSet over a loaded config (see gitopsctl.targets)."""

    def __init__(self, config: Any, *, environ: Mapping[str, str] | None = None,
                 progress: Callable[[str], None] | None = None, reporter: Any = None,
                 repo_path: Path | None = None):
        self.config = config
        self.environ = environ
        self.progress = progress
        self.reporter = reporter
        self.repo_path = repo_path
        self._built: dict[str, Target] = {}      # by service
        self._vms: dict[str, Any] = {}           # VMTarget by target name, shared by its services
        self._applies: dict[str, dict] = {}      # a Kubernetes target's apply state, by target name
        self._loader: Preload | None = None
        self._lock = threading.Lock()

    def target_name(self, service: str) -> str:
        return self.config.service(service).target

    def for_service(self, service: str) -> Target:
        if self._loader is not None:
            self._loader.wait(self.config.target(self.target_name(service)).kind)
        if service not in self._built:
            self._built[service] = self._build(self.target_name(service), service)
        return self._built[service]

    def prepare(self, connect: bool = True) -> None:
        """Start importing the target clients in the background and return at once: the
        kubernetes client first, needed first; a Target is built once its client is in.
        With `connect`, the VMs' SSH connections are opened next (VMTarget.preconnect),
        so that a sync's turn, later in the stage or the rollback, starts without the
        handshake."""
        if self._loader is None:
            kinds = [kind for kind in CLIENT_MODULES if self.config.targets_of_kind(kind)]
            self._loader = Preload([(kind, CLIENT_MODULES[kind]) for kind in kinds],
                                   then=self._preconnect if connect else None,
                                   shared=SHARED_MODULES if kinds else ()).start()

    def _build(self, name: str, service: str) -> Target:
        if self.config.target(name).kind == "kubernetes":
            from gitopsctl.targets.kubernetes import KubeTarget

            contains = _contains(self.config, self.repo_path) if self.repo_path is not None else None
            return KubeTarget.from_config(self.config, service, progress=self.progress,
                                          environ=self.environ, contains=contains,
                                          applies=self._applies.setdefault(name, {}))
        return self._vm(name).for_service(service)

    def _vm(self, name: str) -> Any:
        with self._lock:  # the loader thread builds them too (prepare)
            if name not in self._vms:
                from gitopsctl.targets.vm import VMTarget

                self._vms[name] = VMTarget(self.config, name, environ=self.environ,
                                           reporter=self.reporter)
            return self._vms[name]

    def _preconnect(self) -> None:
        for name in self.config.targets_of_kind("vm"):
            try:
                self._vm(name).preconnect()
            except Exception:  # noqa: BLE001 - a target that cannot be built fails where it is used
                pass


def production_targets(ctx: Any) -> ConfiguredTargets:
    """What the commands pass to the engine: the config's targets, reporting through ctx."""
    return ConfiguredTargets(ctx.config, environ=ctx.environ, progress=ctx.reporter.debug,
                             reporter=ctx.reporter, repo_path=ctx.repo)


# What each kind of target needs imported before its Target is built (gitopsctl.preload);
# the VM's own modules too, which preconnect imports on the loader's thread.
CLIENT_MODULES = {"kubernetes": ("kubernetes.client", "kubernetes.config"),
                  "vm": ("fabric", "gitopsctl.targets.vm", "gitopsctl.targets.sshearly")}
# Imported by the kubernetes client and by the engine meanwhile (registry.py, planning
# the stage): loaded first, in the caller's thread (gitopsctl.preload's rule).
SHARED_MODULES = ("requests",)


def _contains(config: Any, repo_path: Path) -> Callable[[str, str], bool]:
    """newer contains ours? Fetches first: the newer commit was pushed by someone else."""
    from gitopsctl import repo as gitrepo
    from gitopsctl.errors import GitopsctlError

    def contains(newer: str, ours: str) -> bool:
        try:
            gitrepo.fetch(repo_path, config.git.remote, config.git.branch)
            return gitrepo.is_ancestor(repo_path, ours, newer)
        except GitopsctlError:
            return False

    return contains
