"""GOC014 and GOC015: every API object is of a kind the cluster serves, and valid, strictly.

The cluster is gitopsctl.kubeapis' table (Flux 2.9 on Kubernetes 1.33, plus sealed-secrets).
A kind of a group outside that table counts as served when the repository holds its
CustomResourceDefinition, and is then judged by that CRD's schema. Schemas come from
gitopsctl.kubeschema: kubernetes-validate's for built-in kinds, a CRD in the repository for
custom resources when there is one (a `flux bootstrap` commits Flux's), else gitopsctl's
partial Flux schemas.

Not API objects, so skipped: kustomize's own files (kustomize.config.k8s.io Kustomization and
Component, `builtin` plugins, anything in a kustomization.yaml) and docker compose files. A
file a kustomization uses as a patch is partial by design: only its kind and unknown fields
are judged, not missing required fields.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from gitopsctl import kubeapis, kubeschema
from gitopsctl.checks import Finding
from gitopsctl.checks.documents import KUSTOMIZATION_NAMES, YamlFile, position
from gitopsctl.errors import Location

_NOT_API_GROUPS = ("kustomize.config.k8s.io", "config.kubernetes.io")
_CLUSTER = f"Flux {kubeapis.FLUX_RELEASE} / Kubernetes {kubeapis.KUBERNETES_RELEASE}"


def repository_crds(files: Iterable[YamlFile], elsewhere: Iterable[YamlFile] = ()
                     ) -> dict[tuple[str, str], dict]:
    """Every CRD schema in `files` and in `elsewhere`: the repository's other files that hold
    one (checks.scope.Lookups), so a file checked on its own is still judged by the CRDs the
    repository installs."""
    every = {f.path.resolve(): f for f in elsewhere}
    every.update((f.path.resolve(), f) for f in files)
    return kubeschema.crd_schemas(doc for file in every.values() for doc in file.documents)


def patch_files(files: Iterable[YamlFile]) -> set[Path]:
    """Files the kustomizations among `files` apply as patches (partial objects)."""
    found: set[Path] = set()
    for file in files:
        if file.path.name not in KUSTOMIZATION_NAMES:
            continue
        for doc in file.documents:
            if not isinstance(doc, dict):
                continue
            for entry in _as_list(doc.get("patchesStrategicMerge")) + _as_list(doc.get("patches")):
                target = entry.get("path") if isinstance(entry, dict) else entry
                if isinstance(target, str) and "\n" not in target:
                    found.add((file.path.parent / target).resolve())
    return found


def served_and_valid(files: Sequence[YamlFile], crds: dict[tuple[str, str], dict],
                     patches: set[Path]) -> Iterator[Finding]:
    for file in files:
        if file.is_compose or file.path.name in KUSTOMIZATION_NAMES:
            continue
        partial = file.path.resolve() in patches
        for doc in file.documents:
            if not _is_api_object(doc):
                continue
            unserved = _unserved(doc, crds, file.display)
            if unserved is not None:
                yield unserved
                continue
            yield from _schema_findings(doc, crds, file.display, partial)


def _is_api_object(doc: Any) -> bool:
    if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
        return False
    api_version = doc.get("apiVersion")
    if api_version == "builtin":  # kustomize's built-in transformer and generator configs
        return False
    return not (isinstance(api_version, str) and api_version.split("/")[0] in _NOT_API_GROUPS)


def _unserved(doc: dict, crds: dict, display: str) -> Finding | None:
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    where = position(doc, "apiVersion", display)
    if not isinstance(api_version, str) or not isinstance(kind, str) or not api_version or not kind:
        return Finding("GOC014", where, "apiVersion and kind must both be non-empty strings, "
                       f"not {_shown(api_version)} and {_shown(kind)}",
                       "write e.g. `apiVersion: apps/v1` and `kind: Deployment`")
    if kubeapis.served(api_version, kind):
        return None
    group = api_version.rpartition("/")[0]
    if (api_version, kind) in crds and not kubeapis.groups_served(group):
        return None  # the repository installs this kind itself
    instead = kubeapis.preferred_api_version(api_version, kind)
    if instead is not None:
        hint = f"use `apiVersion: {instead}` (the version {_CLUSTER} serves for {kind})"
        if instead.rpartition("/")[0] == group:
            hint += "; check the fields that changed between the versions"
    else:
        hint = (f"no API group of {_CLUSTER} serves a kind {kind!r}: check its spelling, or commit "
                "the CustomResourceDefinition that defines it")
    return Finding("GOC014", where, f"{kind} {api_version} is not served by {_CLUSTER}: the API server "
                   "refuses it, and Flux's dry-run fails the whole Kustomization that applies it", hint)


def _schema_findings(doc: dict, crds: dict, display: str, partial: bool) -> Iterator[Finding]:
    violations = kubeschema.validate(_plain(doc), crds)
    name = _name(doc)
    source = _source(doc, crds)
    for violation in violations:
        if partial and not violation.unknown:
            continue
        where = _locate(doc, violation.path, display)
        if violation.unknown:
            hint = ("remove the field or fix its spelling: the API server's strict field validation "
                    f"refuses unknown fields (schema: {source})")
        else:
            hint = f"give the field a value the schema of {doc['apiVersion']} {doc['kind']} accepts ({source})"
        yield Finding("GOC015", where, f"{doc['kind']} {name}: {violation}", hint)


def _source(doc: dict, crds: dict) -> str:
    if (doc["apiVersion"], doc["kind"]) in crds:
        return "the CustomResourceDefinition in this repository"
    resource = kubeapis.lookup(doc["apiVersion"], doc["kind"])
    if resource is not None and resource.provider == "kubernetes":
        return f"Kubernetes {kubeapis.KUBERNETES_RELEASE}, from kubernetes-validate"
    return "gitopsctl's partial Flux schema, gitopsctl/fluxschemas.py"


def _locate(doc: Any, path: tuple, display: str) -> Location:
    """The deepest part of `path` present in `doc`: the key itself for an unknown field,
    the parent's key for a missing one."""
    node, where = doc, position(doc, "kind", display, of_key=True)
    for part in path:
        if isinstance(node, dict) and part in node:
            where = position(node, part, display, of_key=True)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            where = position(node, part, display)
            node = node[part]
        else:
            break
    return where


def _plain(value: Any) -> Any:
    """JSON's view of the document, as the API server decodes it (YAML timestamps are strings)."""
    if isinstance(value, dict):
        return {k if isinstance(k, str) else json.dumps(_plain(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, _dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, _dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _name(doc: dict) -> str:
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    return repr(name) if isinstance(name, str) else "(no name)"


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, list) else []


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
