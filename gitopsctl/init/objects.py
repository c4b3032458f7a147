"""What init reads out of one YAML document: Flux objects, workloads, kustomize and compose files.

Each reader takes a parsed document (checks.documents.parse_documents) and appends what
it found to a Discovery; anything malformed is passed over, as a missing field is.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Any

from gitopsctl.setters import Marker

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


@dataclass(frozen=True)
class Ref:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class FluxKustomization:
    ref: Ref
    path: str                   # repo-relative directory, "." for the root
    source_kind: str
    source: Ref
    depends_on: tuple[Ref, ...]
    target_namespace: str | None
    file: str
    line: int


@dataclass(frozen=True)
class GitRepository:
    ref: Ref
    branch: str | None
    file: str


@dataclass(frozen=True)
class ImagePolicy:
    ref: Ref
    repository: Ref             # spec.imageRepositoryRef
    tag_pattern: str | None     # spec.filterTags.pattern
    file: str
    ordering: str | None = None  # spec.policy's one key: semver, numerical or alphabetical


@dataclass(frozen=True)
class ImageRepository:
    ref: Ref
    image: str | None           # spec.image: host/project/name
    file: str


@dataclass(frozen=True)
class Automation:
    ref: Ref
    source: Ref
    update_path: str            # repo-relative
    suspended: bool
    file: str


@dataclass(frozen=True)
class Workload:
    kind: str
    name: str
    namespace: str | None       # metadata.namespace as written
    images: tuple[str, ...]     # every container's and initContainer's image
    policies: tuple[str, ...]   # policies of the markers on those images
    file: str
    labels: tuple[tuple[str, str], ...] = ()   # the pod template's
    probe_path: str | None = None               # a readinessProbe.httpGet.path


@dataclass(frozen=True)
class NodePortService:
    """A Service reachable on every node's port: the likeliest HTTP health check from outside."""

    name: str
    selector: tuple[tuple[str, str], ...]
    node_ports: tuple[int, ...]
    file: str


@dataclass(frozen=True)
class KustomizeFile:
    directory: str
    file: str
    resources: tuple[str, ...]  # resources, components and bases, as written
    patches: tuple[str, ...]    # patch files it reads (their markers count as its own)
    namespace: str | None
    images: tuple[dict, ...]    # the `images:` list


@dataclass(frozen=True)
class ComposeService:
    name: str
    image: str | None
    policies: tuple[str, ...]   # policies of the markers on its image
    has_healthcheck: bool
    env_files: tuple[str, ...]  # repo-relative


@dataclass(frozen=True)
class ComposeFile:
    file: str
    project: str | None         # top-level `name:`
    services: tuple[ComposeService, ...]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(v for v in _list(value) if isinstance(v, str))


# the marker sits on a container's image itself, not on some other field of the container
_CONTAINER_IMAGE = re.compile(r"\.(initContainers|containers)\[\d+\]\.image$")


def _repo_path(path: str) -> str:
    """A Flux spec.path ("./clusters/x", "clusters/x/") as a repo-relative directory."""
    return posixpath.normpath(path.strip().lstrip("/")) if path.strip() else "."


def read_object(doc: dict, display: str, markers: list[Marker], found) -> None:
    api, kind = str(doc.get("apiVersion", "")), doc["kind"]
    meta, spec = _mapping(doc.get("metadata")), _mapping(doc.get("spec"))
    name = _text(meta.get("name"))
    if name is None:
        return
    namespace = _text(meta.get("namespace"))
    ref = Ref(namespace or "flux-system", name)
    group = api.split("/", 1)[0]
    if kind == "Kustomization" and group == "kustomize.toolkit.fluxcd.io":
        source = _mapping(spec.get("sourceRef"))
        line = doc.lc.line + 1 if hasattr(doc, "lc") else 1
        found.kustomizations.append(FluxKustomization(
            ref, _repo_path(str(spec.get("path") or "")), _text(source.get("kind")) or "GitRepository",
            Ref(_text(source.get("namespace")) or ref.namespace, _text(source.get("name")) or "?"),
            tuple(Ref(_text(d.get("namespace")) or ref.namespace, d["name"])
                  for d in _list(spec.get("dependsOn")) if isinstance(d, dict) and _text(d.get("name"))),
            _text(spec.get("targetNamespace")), display, line))
    elif kind == "GitRepository" and group == "source.toolkit.fluxcd.io":
        found.git_repositories.append(GitRepository(
            ref, _text(_mapping(spec.get("ref")).get("branch")), display))
    elif kind == "ImagePolicy" and group == "image.toolkit.fluxcd.io":
        repo = _mapping(spec.get("imageRepositoryRef"))
        found.policies.append(ImagePolicy(
            ref, Ref(_text(repo.get("namespace")) or ref.namespace, _text(repo.get("name")) or name),
            _text(_mapping(spec.get("filterTags")).get("pattern")), display,
            next(iter(_mapping(spec.get("policy"))), None)))
    elif kind == "ImageRepository" and group == "image.toolkit.fluxcd.io":
        found.repositories.append(ImageRepository(ref, _text(spec.get("image")), display))
    elif kind == "ImageUpdateAutomation" and group == "image.toolkit.fluxcd.io":
        source = _mapping(spec.get("sourceRef"))
        found.automations.append(Automation(
            ref, Ref(_text(source.get("namespace")) or ref.namespace, _text(source.get("name")) or "?"),
            _repo_path(str(_mapping(spec.get("update")).get("path") or "")),
            spec.get("suspend") is True, display))
    elif kind == "SealedSecret" and group == "bitnami.com":
        if display not in found.sealed_secrets:
            found.sealed_secrets.append(display)
    elif kind in WORKLOAD_KINDS and group == "apps":
        pod = _mapping(_mapping(_mapping(spec.get("template")).get("spec")))
        containers = [c for key in ("initContainers", "containers")
                      for c in _list(pod.get(key)) if isinstance(c, dict)]
        images = tuple(c["image"] for c in containers if _text(c.get("image")))
        policies = tuple(dict.fromkeys(m.policy for m in markers
                                       if _CONTAINER_IMAGE.search(m.yaml_path)))
        labels = _mapping(_mapping(_mapping(spec.get("template")).get("metadata")).get("labels"))
        paths = [_mapping(_mapping(c.get("readinessProbe")).get("httpGet")).get("path")
                 for c in containers]
        found.workloads.append(Workload(
            kind, name, namespace, images, policies, display,
            tuple((str(k), str(v)) for k, v in labels.items()),
            next((p for p in paths if _text(p)), None)))
    elif kind == "Service" and api == "v1" and spec.get("type") == "NodePort":
        ports = tuple(p["nodePort"] for p in _list(spec.get("ports"))
                      if isinstance(p, dict) and isinstance(p.get("nodePort"), int))
        selector = _mapping(spec.get("selector"))
        if ports and selector:
            found.node_ports.append(NodePortService(
                name, tuple((str(k), str(v)) for k, v in selector.items()), ports, display))


def kustomize_file(doc: dict, display: str, found) -> None:
    resources = _strings(doc.get("resources")) + _strings(doc.get("components")) + \
        _strings(doc.get("bases"))
    patches = [p for p in _strings(doc.get("patchesStrategicMerge")) if "\n" not in p]
    for patch in _list(doc.get("patches")):
        if isinstance(patch, dict) and _text(patch.get("path")):
            patches.append(patch["path"])
    for patch in _list(doc.get("patchesJson6902")):
        if isinstance(patch, dict) and _text(patch.get("path")):
            patches.append(patch["path"])
    directory = posixpath.dirname(display) or "."
    images = tuple(i for i in _list(doc.get("images")) if isinstance(i, dict))
    found.kustomize_files[directory] = KustomizeFile(
        directory, display, resources, tuple(patches), _text(doc.get("namespace")), images)


def compose_file(doc: dict, display: str, markers: list[Marker], found) -> None:
    directory = posixpath.dirname(display) or "."
    services = []
    for name, body in _mapping(doc.get("services")).items():
        if not isinstance(name, str):
            continue
        body = _mapping(body)
        policies = tuple(dict.fromkeys(m.policy for m in markers
                                       if m.yaml_path == f"services.{name}.image"))
        env_files = body.get("env_file")
        env_files = [env_files] if isinstance(env_files, (str, dict)) else _list(env_files)
        paths = [e if isinstance(e, str) else _text(_mapping(e).get("path")) for e in env_files]
        services.append(ComposeService(
            name, _text(body.get("image")), policies, _has_healthcheck(body),
            tuple(posixpath.normpath(posixpath.join(directory, p)) for p in paths if p)))
    found.compose_files.append(ComposeFile(display, _text(doc.get("name")), tuple(services)))


def _has_healthcheck(body: dict) -> bool:
    check = _mapping(body.get("healthcheck"))
    return bool(check) and check.get("disable") is not True and \
        _strings(check.get("test"))[:1] != ("NONE",)
