"""What kube-apiserver does to a write before storing it: strict decoding and schema validation.

Order and answers follow the API server:
* Decoding, with the request's `fieldValidation` (k8s.io/apiserver pkg/endpoints/handlers/rest.go
  fieldValidation(): unset means Warn; kubectl sends Strict). An unknown field is, with Strict,
  400 BadRequest `<Kind> in version "<v>" cannot be handled as a <Kind>: strict decoding error:
  unknown field "spec.foo"` (k8s.io/apimachinery pkg/runtime/serializer/json strict errors);
  with Warn, dropped with a `Warning: 299 - "unknown field \"spec.foo\""` header; with Ignore,
  dropped silently. Custom resources behave alike (apiextensions-apiserver pkg/apiserver
  schema pruning reports the pruned paths the same way).
* Validation: any other schema violation is 422 Invalid, `<Kind>.<group> "<name>" is invalid:
  <field>: <message>` with one StatusCause (reason, message, field) per violation
  (k8s.io/apimachinery pkg/api/errors NewInvalid). On update, custom resources get CRD
  validation ratcheting (KEP-4008, on by default since 1.30): a violation in a field left as it
  was does not block the write.
Divergence: a wrong type in a built-in kind is a 400 decode error on a real server; here it is
a 422 cause like the rest, which names the same field.
"""

from __future__ import annotations

import copy
from typing import Any

from gitopsctl import kubeapis, kubeschema
from gitopsctl.sandbox.lab.kube.store import StoreError

_MODES = ("Strict", "Warn", "Ignore")


class RequestRefused(StoreError):
    """A StoreError whose Status carries details (the causes of a 422)."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(code, reason, message)
        self.details = details


def field_validation(query: dict) -> str:
    mode = query.get("fieldValidation") or "Warn"
    if mode not in _MODES:
        raise StoreError(400, "BadRequest", f'fieldValidation must be one of "Ignore", "Warn", or "Strict", '
                                            f'got "{mode}"')
    return mode


def admit(resource: kubeapis.Resource, obj: dict, mode: str, old: dict | None = None) -> tuple[dict, list[str]]:
    """The object to store (unknown fields dropped unless refused) and the warnings to send."""
    obj = _typed(resource, obj)
    violations = kubeschema.validate(obj)
    unknown = [v for v in violations if v.unknown]
    if unknown and mode == "Strict":
        listed = ", ".join(str(v) for v in unknown)
        raise RequestRefused(400, "BadRequest", f'{resource.kind} in version "{resource.version}" cannot be '
                                                f'handled as a {resource.kind}: strict decoding error: {listed}')
    invalid = [v for v in violations if not v.unknown]
    if old is not None and resource.provider != "kubernetes":
        invalid = [v for v in invalid if _changed(v.path, old, obj)]
    if invalid:
        raise _invalid(resource, obj, invalid)
    kept = _without(obj, [v.path for v in unknown]) if unknown else obj
    warnings = [str(v) for v in unknown] if mode == "Warn" else []
    return kept, warnings


def _typed(resource: kubeapis.Resource, obj: dict) -> dict:
    """The body with the type its URL names; a body naming another one is refused
    (k8s.io/apiserver pkg/endpoints/handlers: "the API version in the data ... does not match")."""
    sent = obj.get("apiVersion"), obj.get("kind")
    if sent[0] not in (None, resource.api_version):
        raise StoreError(400, "BadRequest", f"the API version in the data ({sent[0]}) does not match the expected "
                                            f"API version ({resource.api_version})")
    if sent[1] not in (None, resource.kind):
        raise StoreError(400, "BadRequest", f"the kind in the data ({sent[1]}) does not match the expected "
                                            f"kind ({resource.kind})")
    return {**obj, "apiVersion": resource.api_version, "kind": resource.kind}


def _invalid(resource: kubeapis.Resource, obj: dict, invalid: list[kubeschema.Violation]) -> RequestRefused:
    name = (obj.get("metadata") or {}).get("name", "") if isinstance(obj.get("metadata"), dict) else ""
    qualified = f"{resource.kind}.{resource.group}" if resource.group else resource.kind
    errors = [str(v) for v in invalid]
    listed = errors[0] if len(errors) == 1 else f"[{', '.join(errors)}]"
    causes = [{"reason": v.reason, "message": v.message, "field": v.field} for v in invalid]
    return RequestRefused(422, "Invalid", f'{qualified} "{name}" is invalid: {listed}',
                          {"name": name, "group": resource.group, "kind": resource.kind, "causes": causes})


_MISSING = object()


def _at(doc: Any, path: tuple) -> Any:
    for part in path:
        if isinstance(doc, dict) and isinstance(part, str) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and isinstance(part, int) and 0 <= part < len(doc):
            doc = doc[part]
        else:
            return _MISSING
    return doc


def _changed(path: tuple, old: dict, new: dict) -> bool:
    return _at(old, path) != _at(new, path)


def _without(obj: dict, paths: list[tuple]) -> dict:
    pruned = copy.deepcopy(obj)
    for path in paths:
        parent = _at(pruned, path[:-1])
        if isinstance(parent, dict):
            parent.pop(path[-1], None)
    return pruned
