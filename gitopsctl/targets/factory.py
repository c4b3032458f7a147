"""The production TargetSet: the targets gitopsctl.yaml names, built on first use.

One Target per service. The services of one VM target share one VMTarget: its sync
converges every compose service it owns at once, so applying one of them runs the sync
and the others read their part of that run. On a Kubernetes target each service's Target
follows that service's workloads; Flux's objects are the target's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

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

    def target_name(self, service: str) -> str:
        return self.config.service(service).target

    def for_service(self, service: str) -> Target:
        if service not in self._built:
            self._built[service] = self._build(self.target_name(service), service)
        return self._built[service]

    def prepare(self) -> None:
        load_target_clients(self.config)

    def _build(self, name: str, service: str) -> Target:
        if self.config.target(name).kind == "kubernetes":
            from gitopsctl.targets.kubernetes import KubeTarget

            contains = _contains(self.config, self.repo_path) if self.repo_path is not None else None
            return KubeTarget.from_config(self.config, service, progress=self.progress,
                                          environ=self.environ, contains=contains,
                                          applies=self._applies.setdefault(name, {}))
        if name not in self._vms:
            from gitopsctl.targets.vm import VMTarget

            self._vms[name] = VMTarget(self.config, name, environ=self.environ,
                                       reporter=self.reporter)
        return self._vms[name].for_service(service)


def production_targets(ctx: Any) -> ConfiguredTargets:
    """What the commands pass to the engine: the config's targets, reporting through ctx."""
    return ConfiguredTargets(ctx.config, environ=ctx.environ, progress=ctx.reporter.debug,
                             reporter=ctx.reporter, repo_path=ctx.repo)


def load_target_clients(config: Any) -> None:
    """Import the clients the configured targets need, ahead of use: the kubernetes client
    alone can take a second or two to load, which would otherwise sit between pushing a
    deploy commit and asking Flux about it."""
    try:
        if config.targets_of_kind("kubernetes"):
            import kubernetes.client  # noqa: F401
            import kubernetes.config  # noqa: F401
        if config.targets_of_kind("vm"):
            import fabric  # noqa: F401
    except ImportError:
        pass  # the import where the client is used reports it with its context


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
