"""The server-side dry-run kustomize-controller runs over a whole batch before applying any of it.

fluxcd/pkg ssa/manager_apply.go `ApplyAll` dry-runs every object and applies none unless all
pass; a refusal is an ssa/errors/errors.go `DryRunErr`, printed as
`<Kind>/<namespace>/<name> dry-run failed[ (<Reason>)]: <cause>` (ssa/utils/fmt.go names the
object). What the cluster serves is gitopsctl.kubeapis, strict validation gitopsctl.kubeschema:
the same tables the emulator's API server answers from.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from gitopsctl import kubeapis, kubeschema


def object_id(doc: Mapping[str, Any], namespace: str) -> str:
    """`Kind/namespace/name` as fluxcd/pkg ssa/utils/fmt.go FmtObjMetadata prints it; `namespace`
    is where the object lands (spec.targetNamespace already applied)."""
    resource = kubeapis.lookup(str(doc.get("apiVersion", "")), str(doc.get("kind", "")))
    ns = namespace if resource is None or resource.namespaced else ""
    name = str((doc.get("metadata") or {}).get("name", ""))
    return "/".join(p for p in (str(doc.get("kind", "")), ns, name) if p)


def refusal(doc: Mapping[str, Any], namespace: str) -> str | None:
    """Why the API server's dry-run refuses doc, formatted as Flux reports it; None if accepted."""
    api_version, kind = str(doc.get("apiVersion", "")), str(doc.get("kind", ""))
    who = object_id(doc, namespace)
    if not kubeapis.served(api_version, kind):
        # k8s.io/apimachinery meta.NoKindMatchError from the REST mapper: no API status, no "(Reason)".
        return f'{who} dry-run failed: no matches for kind "{kind}" in version "{api_version}"'
    violations = kubeschema.validate(dict(doc))
    unknown = [v for v in violations if v.unknown]
    name = str((doc.get("metadata") or {}).get("name", ""))
    if unknown:
        # Server-side apply builds a typed patch first; an undeclared field fails that (400).
        where = f"{namespace}/{name}" if who.count("/") == 2 else name
        fields = ", ".join(f".{v.field}: field not declared in schema" for v in unknown)
        return (f"{who} dry-run failed (BadRequest): failed to create typed patch object "
                f"({where}; {api_version}, Kind={kind}): {fields}")
    if violations:
        group = api_version.rpartition("/")[0]
        resource = f"{kind}.{group}" if group else kind
        return (f'{who} dry-run failed (Invalid): {resource} "{name}" is invalid: '
                + ", ".join(str(v) for v in violations))
    return None


def first_refusal(documents: list[Mapping[str, Any]], namespace_of: Callable[[Mapping[str, Any]], str]) -> str | None:
    for doc in documents:
        problem = refusal(doc, namespace_of(doc))
        if problem is not None:
            return problem
    return None
