"""Rules about setter markers: known policies, well-formed markers, one writer per field.

The rules that hold markers against gitopsctl.yaml's services are in checks.bindings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from gitopsctl.checks import WARNING, Finding
from gitopsctl.checks.documents import YamlFile, position
from gitopsctl.errors import Location

_IMAGE_API = "image.toolkit.fluxcd.io/"


@dataclass(frozen=True)
class FluxObject:
    kind: str
    namespace: str | None
    name: str
    location: Location
    doc: object


def flux_objects(files: Iterable[YamlFile], kind: str) -> list[FluxObject]:
    out = []
    for file in files:
        for doc in file.k8s_documents():
            if doc.get("kind") != kind or not str(doc.get("apiVersion", "")).startswith(_IMAGE_API):
                continue
            meta = doc.get("metadata") or {}
            if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
                continue
            namespace = meta.get("namespace") if isinstance(meta.get("namespace"), str) else None
            out.append(FluxObject(kind, namespace, meta["name"],
                                  position(doc, "kind", file.display), doc))
    return out


def policy_exists(policy: str, policies: Sequence[FluxObject]) -> bool:
    namespace, name = policy.split(":", 1)
    # A policy without metadata.namespace gets one from its kustomization; accept any.
    return any(p.name == name and (p.namespace is None or p.namespace == namespace)
               for p in policies)


def unknown_policies(files: Iterable[YamlFile], policies: Sequence[FluxObject]) -> Iterator[Finding]:
    known = sorted({f"{p.namespace or '?'}:{p.name}" for p in policies})
    for file in files:
        if file.scan is None:
            continue
        for marker in file.scan.markers:
            if not policy_exists(marker.policy, policies):
                yield Finding("GOC006", marker.location,
                              f"setter marker names ImagePolicy {marker.policy}, which no file "
                              "of the repository defines",
                              f"known policies: {', '.join(known) or 'none'}; add an "
                              "ImagePolicy, or fix the marker")
        for bad in file.scan.malformed:
            yield Finding("GOC011", Location(file.display, bad.line, bad.column),
                          f"setter marker not understood: {bad.reason}",
                          'write it as # {"$imagepolicy": "NAMESPACE:NAME"} (or :tag, :name, '
                          ":digest)")


def two_writers(config, files: Sequence[YamlFile], automations: Sequence[FluxObject],
                root: Path) -> Iterator[Finding]:
    """A marked field that an active ImageUpdateAutomation also rewrites.

    Flux's automation and gitopsctl would both commit to the same line; after a rollback
    Flux would move the image forward again unless gitopsctl suspends it. Arranged (a
    warning) when a Kubernetes target's image_update_automation names the object, because
    rollback then suspends it; an error otherwise.
    """
    policies = {s.policy for s in config.services.values()} if config is not None else set()
    arranged: set[tuple[str, str]] = set()
    if config is not None:
        for target in config.targets_of_kind("kubernetes").values():
            ref = target.image_update_automation
            if ref is not None:
                arranged.add((ref.namespace, ref.name))
    for automation in automations:
        spec = automation.doc.get("spec") or {}
        if not isinstance(spec, dict) or spec.get("suspend") is True:
            continue
        update = spec.get("update") or {}
        update_path = update.get("path", "./") if isinstance(update, dict) else "./"
        scope = (root / str(update_path)).resolve()
        for file in files:
            if file.scan is None or not _under(file.path.resolve(), scope):
                continue
            for marker in file.scan.markers:
                if marker.policy not in policies:
                    continue
                namespace = automation.namespace or "flux-system"
                if marker.policy.split(":", 1)[0] != namespace:
                    continue  # an automation only applies policies of its own namespace
                is_arranged = (namespace, automation.name) in arranged
                yield Finding(
                    "GOC010", marker.location,
                    f"{marker.setter} is written by gitopsctl and by ImageUpdateAutomation "
                    f"{namespace}/{automation.name} ({automation.location})"
                    + ("; rollback suspends it" if is_arranged else ""),
                    "set spec.suspend: true on the automation, or name it in the "
                    "image_update_automation of the Kubernetes target it runs on "
                    "(targets.NAME.image_update_automation) so rollback suspends it",
                    severity=WARNING if is_arranged else "error")


def _under(path: Path, scope: Path) -> bool:
    return path == scope or scope in path.parents
