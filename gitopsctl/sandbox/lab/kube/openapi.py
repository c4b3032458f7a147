"""The part of OpenAPI v3 kubectl reads before a write: does the server take `fieldValidation`?

kubectl's default `--validate=strict` asks the server to validate fields when the server says
it can (kubernetes/cli-runtime pkg/resource/query_param_verifier_v3.go: in the group version's
document, a PATCH operation tagged with the kind's x-kubernetes-group-version-kind lists a
`fieldValidation` query parameter), and otherwise validates client-side, which needs the full
OpenAPI. So serving these two documents lets kubectl send fieldValidation=Strict and show the
server's own errors. The documents hold no schemas: kubectl then builds apply patches as it
does without OpenAPI (compiled-in types, JSON merge patch for custom resources).

/openapi/v3 is the discovery map k8s.io/kube-openapi pkg/handler3 OpenAPIV3Discovery serves;
/openapi/v3/<api/v1|apis/G/V> one spec3 document per group version.
"""

from __future__ import annotations

import hashlib

from gitopsctl import kubeapis

_FIELD_VALIDATION = {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True},
                     "description": "Ignore, Warn or Strict: what the server does with unknown or duplicate fields."}


def _key(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def discovery_map() -> dict:
    paths = {}
    for group, versions in kubeapis.group_versions():
        for version in versions:
            key = _key(group, version)
            digest = hashlib.sha256(repr(kubeapis.resources_in(group, version)).encode()).hexdigest()[:16].upper()
            paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
    return {"paths": paths}


def group_version_document(path: str) -> dict | None:
    """The document for `path` ("api/v1", "apis/apps/v1"); None when no such group version."""
    parts = path.strip("/").split("/")
    if parts[:1] == ["api"] and len(parts) == 2:
        group, version = "", parts[1]
    elif parts[:1] == ["apis"] and len(parts) == 3:
        group, version = parts[1], parts[2]
    else:
        return None
    resources = kubeapis.resources_in(group, version)
    if not resources:
        return None
    prefix = f"/{_key(group, version)}"
    paths = {}
    for resource in resources:
        if "patch" not in resource.verbs:
            continue
        scope = f"{prefix}/namespaces/{{namespace}}" if resource.namespaced else prefix
        paths[f"{scope}/{resource.plural}/{{name}}"] = {"patch": {
            "operationId": f"patch{resource.kind}",
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": resource.kind},
            "parameters": [_FIELD_VALIDATION],
            "responses": {"200": {"description": "OK"}}}}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": f"v{kubeapis.KUBERNETES_RELEASE}.0"},
            "paths": paths}
