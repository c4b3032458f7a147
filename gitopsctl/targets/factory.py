"""Pick the Target implementation a service's config names."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from gitopsctl.targets import Target


def target_for(config: Any, service: str, *, environ: Mapping[str, str] | None = None,
               progress: Callable[[str], None] | None = None, reporter: Any = None) -> Target:
    kind = config.service(service).target
    if kind == "kubernetes":
        from gitopsctl.targets.kubernetes import KubeTarget

        return KubeTarget.from_config(config, service, progress=progress, environ=environ)
    from gitopsctl.targets.vm import VMTarget

    return VMTarget(config, environ=environ, reporter=reporter)
