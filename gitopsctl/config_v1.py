"""Config version 1: one Kubernetes target, one VM, the services `frontend` and `backend`.

Version 1 files still load: they are read with these classes (so errors keep their
file:line) and upgraded to the version 2 model, which is all the rest of gitopsctl sees.
`gitopsctl config --migrate` prints the upgraded file.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

from gitopsctl.config import (Config, Git, HealthCheck, KubernetesTarget, ObjectRef,
                              Registry, Service, Stage, Timeouts, VMTarget, Workload, meta)
from gitopsctl.errors import ConfigError


@dataclass(frozen=True)
class KubernetesTargetV1:
    git_repository: ObjectRef = field(metadata=meta("Flux GitRepository to reconcile"))
    kustomization: ObjectRef = field(metadata=meta("Flux Kustomization that applies the app"))
    deployment: ObjectRef = field(metadata=meta("Deployment whose rollout is followed"))
    health_url: str = field(metadata=meta("HTTP URL that answers 2xx when the frontend is healthy",
                                          "http://frontend.lan/healthz",
                                          pattern=r"^https?://\S+$"))
    kubeconfig: Optional[str] = field(default=None, metadata=meta(
        "Path to the kubeconfig (default: $KUBECONFIG, then ~/.kube/config)", "~/.kube/config"))
    context: Optional[str] = field(default=None, metadata=meta(
        "Kube context to use (default: the kubeconfig's current context)", "homelab"))
    image_update_automation: Optional[ObjectRef] = field(default=None, metadata=meta(
        "Flux ImageUpdateAutomation writing the same fields; rollback suspends it"))


def _derived(name: str, base: type, *, drop: tuple[str, ...] = (), replace: dict | None = None,
             after: dict | None = None) -> type:
    """A version 1 section as the version 2 one it became: `drop` the keys v1 did not have,
    `replace` a field's (type, field) where v1 said otherwise, add `after[key]` fields after key."""
    hints = typing.get_type_hints(base)
    fields = []
    for f in dataclasses.fields(base):
        if f.name in drop:
            continue
        if f.name in (replace or {}):
            fields.append((f.name, *replace[f.name]))
        else:
            extra = {"default": f.default} if f.default is not dataclasses.MISSING else \
                {"default_factory": f.default_factory} if f.default_factory is not dataclasses.MISSING else {}
            fields.append((f.name, hints[f.name], field(metadata=f.metadata, **extra)))
        fields.extend((after or {}).get(f.name, ()))
    cls = dataclasses.make_dataclass(name, fields, frozen=True)
    cls.__module__ = __name__
    return cls


ServiceV1 = _derived("ServiceV1", Service, drop=("workloads", "compose_services", "health"), replace={
    "target": (str, field(metadata=meta("Where the service runs", "kubernetes", choices=("kubernetes", "vm"))))})

VMTargetV1 = _derived("VMTargetV1", VMTarget, drop=("kind",), after={"compose_file": [(
    "health_url", str, field(metadata=meta("HTTP URL that answers 2xx when the backend is healthy",
                                           "http://backend.lan:8080/healthz", pattern=r"^https?://\S+$")))]})


@dataclass(frozen=True)
class TargetsV1:
    kubernetes: Optional[KubernetesTargetV1] = field(default=None, metadata=meta(
        "The Kubernetes cluster reconciled by Flux"))
    vm: Optional[VMTargetV1] = field(default=None, metadata=meta(
        "The VM running docker compose"))


@dataclass(frozen=True)
class StageV1:
    order: tuple[str, ...] = field(default=("frontend", "backend"), metadata=meta(
        "Services in deploy order", ["frontend", "backend"]))
    delay: float = field(default=60.0, metadata=meta(
        "Pause after the first service is healthy before the next one starts", "60s",
        duration=True, minimum=0, maximum=3600))


@dataclass(frozen=True)
class ConfigV1:
    registry: Registry = field(metadata=meta("The image registry (Harbor)"))
    services: dict[str, ServiceV1] = field(metadata=meta("Services by name (frontend, backend)"))
    targets: TargetsV1 = field(metadata=meta("Where services run"))
    version: int = field(default=1, metadata=meta("Config format version", 1, choices=(1,)))
    git: Git = field(default_factory=Git, metadata=meta("Git settings"))
    stage: StageV1 = field(default_factory=StageV1, metadata=meta("Stage order and delay"))
    timeouts: Timeouts = field(default_factory=Timeouts, metadata=meta("Deadlines"))
    state_dir: str = field(default=".gitopsctl", metadata=meta(
        "Git-ignored directory (repo-relative) for build records and locks", ".gitopsctl"))


def looks_like_v2(data: dict) -> bool:
    """A file without `version:` that is shaped like version 2 (named targets with a kind)."""
    targets = data.get("targets")
    if not isinstance(targets, dict):
        return False
    return any(isinstance(t, dict) and "kind" in t for t in targets.values()) or \
        any(name not in ("kubernetes", "vm") for name in targets)


def cross_check(config: ConfigV1, data: dict, loader: Any) -> None:
    services = data.get("services") or {}
    for i, name in enumerate(config.stage.order):
        if name not in config.services:
            stage = data.get("stage") or {}
            order = stage.get("order") if isinstance(stage, dict) else None
            parent, key = (order, i) if isinstance(order, list) else (data, "stage")
            raise ConfigError(f"stage.order[{i}]: unknown service {name!r}",
                              location=loader.where(parent, key),
                              hint=f"use one of: {', '.join(config.services)}",
                              details={"key": f"stage.order[{i}]"})
    for name, svc in config.services.items():
        if getattr(config.targets, svc.target) is None:
            raise ConfigError(
                f"services.{name}.target: target {svc.target!r} is not configured",
                location=loader.where(services.get(name), "target"),
                hint=f"add a `targets.{svc.target}:` section, or change the service's target",
                details={"key": f"services.{name}.target"})


def upgrade(old: ConfigV1) -> Config:
    """The version 2 form: targets named `kubernetes` and `vm`, health per service."""
    targets: dict[str, Any] = {}
    kube, vm = old.targets.kubernetes, old.targets.vm
    if kube is not None:
        targets["kubernetes"] = KubernetesTarget(
            kind="kubernetes", git_repository=kube.git_repository, kustomizations=(kube.kustomization,),
            kubeconfig=kube.kubeconfig, context=kube.context,
            image_update_automation=kube.image_update_automation)
    if vm is not None:
        targets["vm"] = VMTarget(kind="vm", **{f.name: getattr(vm, f.name) for f in dataclasses.fields(VMTarget)
                                               if f.name != "kind"})
    services = {}
    for name, svc in old.services.items():
        if svc.target == "kubernetes":
            extra = {"workloads": (Workload("Deployment", kube.deployment.name, kube.deployment.namespace),),
                     "health": (HealthCheck(http=kube.health_url),)}
        else:
            extra = {"health": (HealthCheck(http=vm.health_url),)}
        services[name] = Service(image=svc.image, context=svc.context, target=svc.target,
                                 policy=svc.policy, paths=svc.paths, dockerfile=svc.dockerfile,
                                 **extra)
    return Config(registry=old.registry, services=services, targets=targets, git=old.git,
                  stage=Stage(groups=tuple((name,) for name in old.stage.order), delay=old.stage.delay),
                  timeouts=old.timeouts, state_dir=old.state_dir, source_version=1)
