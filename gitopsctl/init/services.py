"""The `services:` and `registry:` sections of a proposal: one service per ImagePolicy."""

from __future__ import annotations

import posixpath
import re
from typing import Any

from gitopsctl.init.discover import Discovery
from gitopsctl.init.fluxtree import Tree
from gitopsctl.init.objects import Ref, Workload
from gitopsctl.init.propose import (IMAGE_NAME, PLACEHOLDER_CONTEXT, Group, Proposal, most_common,
                                    name_for, split_image)

# what config.Registry takes for url and project
_REGISTRY = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]+)?$")
_PROJECT = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*$")


def services(found: Discovery, flux: Tree, groups: dict, proposal: Proposal
             ) -> tuple[dict[str, dict], dict]:
    by_policy: dict[str, list[Group]] = {}
    for group in groups.values():
        by_policy.setdefault(group.policy, []).append(group)
    short = [p.split(":", 1)[1] for p in by_policy]
    images = {key: _image_of(found, group) for key, group in groups.items()}
    registry = most_common([i[:2] for i in images.values() if i is not None and
                            _REGISTRY.match(i[0]) and _PROJECT.match(i[1])]) or \
        ("CHANGE-ME.lan", "homelab")
    out: dict[str, dict] = {}
    for policy in sorted(by_policy):
        namespace, name = policy.split(":", 1)
        for group in sorted(by_policy[policy], key=lambda g: g.target):
            base = name if short.count(name) == 1 else f"{namespace}-{name}"
            if len(by_policy[policy]) > 1:
                base = f"{base}-{group.target}"
            service = name_for(base, "service")
            while service in out:
                service += "-x"
            out[service] = _service(found, flux, group, service, images[(group.policy, group.target)],
                                    registry, proposal)
    if registry[0] == "CHANGE-ME.lan":
        proposal.note(("registry", "url"), "no image name of the form HOST/PROJECT/NAME found "
                      "to take the registry from: set the registry host[:port] and the project "
                      "your builds are pushed to", todo=True)
    return out, {"url": registry[0], "project": registry[1]}


def _image_of(found: Discovery, group: Group) -> tuple[str, str, str] | None:
    """(host, project, image): ImageRepository spec.image, else the marked values."""
    namespace, name = group.policy.split(":", 1)
    policy = next((p for p in found.policies if p.ref == Ref(namespace, name)), None)
    if policy is not None:
        repo = next((r for r in found.repositories if r.ref == policy.repository), None)
        if repo is not None and repo.image:
            parts = split_image(repo.image)
            if parts:
                return parts
    for wanted in ("image", "name"):
        for field_name, value in group.values:
            if field_name == wanted:
                parts = split_image(value)
                if parts:
                    return parts
    return None


def _service(found: Discovery, flux: Tree, group: Group, name: str,
             image: tuple[str, str, str] | None, registry: tuple[str, str],
             proposal: Proposal) -> dict:
    at = ("services", name)
    doc: dict[str, Any] = {}
    if image is None or not IMAGE_NAME.match(image[2]):
        doc["image"] = name
        proposal.note(at + ("image",), f"no image name found for {group.policy}: set the "
                      f"repository under {registry[0]}/{registry[1]} that builds are pushed to",
                      todo=True)
    else:
        doc["image"] = image[2]
        if image[:2] != registry:
            proposal.note(at + ("image",), f"the markers name {'/'.join(image)}, outside "
                          f"{registry[0]}/{registry[1]}: gitopsctl builds to one registry; move "
                          "the image there or leave this service out", todo=True)
    doc["context"] = _context(found, name, image, at, proposal)
    doc["target"] = group.target
    if group.shared:
        proposal.note(at + ("target",), f"{'; '.join(sorted(group.shared))}: one bump deploys "
                      "to all of them, but only this target is verified; split the files per "
                      "cluster, or accept it", todo=True)
    doc["policy"] = group.policy
    namespace, policy = group.policy.split(":", 1)
    if not any(p.ref == Ref(namespace, policy) for p in found.policies):
        proposal.note(at + ("policy",), f"the markers name ImagePolicy {group.policy}, which is "
                      "nowhere in this repository: add it (and its ImageRepository) where Flux "
                      "applies it, or `gitopsctl check` reports GOC006", todo=True)
    doc["paths"] = _paths([posixpath.dirname(f) or "." for f in group.files])
    if group.compose is not None:
        owned = [s for s in group.compose.services if group.policy in s.policies]
        doc["compose_services"] = [s.name for s in owned]
        checks = [{"compose": s.name} for s in owned if s.has_healthcheck]
        _health(doc, checks, at, proposal, vm=True)
    else:
        candidates = _candidates(found, flux, group)
        doc["workloads"] = _workloads(flux, group, candidates, name, at, proposal)
        _health(doc, [], at, proposal, vm=False, hint=_node_port_hint(found, flux, group, candidates))
    return doc


def _paths(directories: list[str]) -> list[str]:
    """The marker files' directories, none inside another."""
    unique = sorted(set(directories))
    return [d for d in unique
            if not any(o != d and (o == "." or d.startswith(o + "/")) for o in unique)]


def _context(found: Discovery, name: str, image, at: tuple, proposal: Proposal) -> str:
    wanted = {name} | ({posixpath.basename(image[2])} if image else set())
    matches = [d for d in found.dockerfile_dirs if posixpath.basename(d) in wanted]
    if len(matches) == 1:
        proposal.note(at + ("context",), f"guessed: {matches[0]} holds a Dockerfile and is named "
                      "like the image; check it")
        return matches[0]
    hint = f" (one of: {', '.join(matches)})" if matches else ""
    proposal.note(at + ("context",), "set the directory (repo-relative) the image is built from"
                  + hint + "; `dockerfile:` is relative to it", todo=True)
    return PLACEHOLDER_CONTEXT


def _health(doc: dict, checks: list[dict], at: tuple, proposal: Proposal, *, vm: bool,
            hint: tuple[str, str] | None = None) -> None:
    if checks:
        doc["health"] = checks
        proposal.note(at + ("health",), "the compose healthcheck is judged on the VM; add an "
                      "`http: URL` check if the service answers HTTP")
        return
    doc["health"] = []
    readiness = "its containers running" if vm else "the workloads' readiness"
    if hint is None:
        proposal.note(at + ("health",), f"none found, so {readiness} is the whole verdict; add "
                      "e.g. `- http: http://HOST:PORT/healthz` or `- tcp: HOST:PORT`")
        return
    why, url = hint
    proposal.note(at + ("health",), f"none set, so {readiness} is the whole verdict. {why}; to "
                  "probe it from where gitopsctl runs, use this instead (NODE: any node's "
                  "address):", example=f"health:\n  - http: {url}")


def _candidates(found: Discovery, flux: Tree, group: Group) -> list[Workload]:
    marked = [w for w in found.workloads if w.file in group.files and group.policy in w.policies]
    return marked or _by_image_name(found, flux, group)


def _node_port_hint(found: Discovery, flux: Tree, group: Group,
                    workloads: list[Workload]) -> tuple[str, str] | None:
    """(why, URL): a NodePort Service in the same build selecting one of the workloads."""
    built = set().union(*(flux.builds[o].files for o in group.owners)) if group.owners else set()
    for w in workloads:
        for service in found.node_ports:
            near = service.file in built or posixpath.dirname(service.file) == posixpath.dirname(w.file)
            if near and set(service.selector) <= set(w.labels):
                return (f"Service {service.name} ({service.file}) publishes it on every "
                        f"node's port {service.node_ports[0]}",
                        f"http://NODE:{service.node_ports[0]}{w.probe_path or '/'}")
    return None


def _workloads(flux: Tree, group: Group, candidates: list[Workload], name: str, at: tuple,
               proposal: Proposal) -> list[dict]:
    out: list[dict] = []
    for w in candidates:
        owners = flux.owners(w.file)
        owner = next((o for o in owners if o in group.owners), owners[0] if owners else None)
        namespace = (flux.namespace_of(owner, w.file) if owner else None) or w.namespace or "default"
        entry = {"kind": w.kind, "name": w.name, "namespace": namespace}
        if entry not in out:
            out.append(entry)
    if not out:
        out.append({"kind": "Deployment", "name": name, "namespace": "default"})
        proposal.note(at + ("workloads",), f"no Deployment, StatefulSet or DaemonSet found whose "
                      f"image carries the {group.policy} marker: name the ones that run it",
                      todo=True)
    return out


def _by_image_name(found: Discovery, flux: Tree, group: Group) -> list:
    """Workloads whose image a kustomize `images:` entry with this policy's marker sets."""
    names = set()
    for file in group.files:
        kfile = found.kustomize_files.get(posixpath.dirname(file) or ".")
        if kfile is None or kfile.file != file:
            continue
        names |= {i["name"] for i in kfile.images if isinstance(i.get("name"), str)}
    if not names:
        return []
    files = set().union(*(flux.builds[o].files for o in group.owners)) if group.owners else set()
    return [w for w in found.workloads if w.file in files
            and any(_repository(img) in names or img in names for img in w.images)]


def _repository(image: str) -> str:
    from gitopsctl.errors import InputError
    from gitopsctl.imageref import parse_reference

    try:
        return parse_reference(image).name
    except InputError:
        return image
