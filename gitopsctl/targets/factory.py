"""Pick the Target implementation a service's config names."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from gitopsctl.targets import Target


def target_for(config: Any, service: str, *, environ: Mapping[str, str] | None = None,
               progress: Callable[[str], None] | None = None, reporter: Any = None,
               repo_path: Path | None = None) -> Target:
    kind = config.service(service).target
    if kind == "kubernetes":
        from gitopsctl.targets.kubernetes import KubeTarget

        contains = _contains(config, repo_path) if repo_path is not None else None
        return KubeTarget.from_config(config, service, progress=progress, environ=environ,
                                      contains=contains)
    from gitopsctl.targets.vm import VMTarget

    return VMTarget(config, environ=environ, reporter=reporter)


def load_target_clients(config: Any) -> None:
    """Import the clients the configured targets need, ahead of use: the kubernetes client
    alone can take a second or two to load, which would otherwise sit between pushing a
    deploy commit and asking Flux about it."""
    try:
        if config.targets.kubernetes is not None:
            import kubernetes.client  # noqa: F401
            import kubernetes.config  # noqa: F401
        if config.targets.vm is not None:
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
