"""Strict validation of one Kubernetes object: unknown fields refused, as the API server's
strict field validation (what kubectl asks for) refuses them.

* Built-in kinds: the strict JSON schemas kubernetes-validate ships for Kubernetes 1.33
  (kubeapis.KUBERNETES_RELEASE), generated from upstream's OpenAPI.
* Custom resources: the `openAPIV3Schema` of a CustomResourceDefinition when the caller has
  one (crd_schemas() reads them from manifests, e.g. the gotk-components.yaml `flux bootstrap`
  commits), treated as the API server treats a structural schema: a field not declared where
  unknown fields are not preserved is refused. CEL rules and string patterns (RE2) are not
  applied. Without a CRD, Flux and sealed-secrets kinds
  use fluxschemas (ours, partial; see there), and metadata is always checked as ObjectMeta.

Public API:
  validate(obj, crds=None) -> list[Violation]   # [] when valid or when no schema is known
  crd_schemas(objects) -> dict[(apiVersion, kind), openAPIV3Schema]
  has_schema(api_version, kind, crds=None) -> bool
A Violation carries the field path and a message; callers add file:line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Mapping

from gitopsctl import fluxschemas, kubeapis

_SCHEMA_DIR = f"v{kubeapis.KUBERNETES_RELEASE}.0-local-strict"
_DEFINITIONS_ID = "https://kubernetes.io/api/_definitions.json"
_OBJECT_META = f"{_DEFINITIONS_ID}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"

# k8s.io/apimachinery/pkg/util/validation/field/errors.go ErrorType values, the `reason` of a
# StatusCause. A strict decoding error (unknown field) has no cause type upstream; ours is named.
REQUIRED = "FieldValueRequired"
INVALID = "FieldValueInvalid"
TYPE_INVALID = "FieldValueTypeInvalid"
NOT_SUPPORTED = "FieldValueNotSupported"
UNKNOWN_FIELD = "FieldValueUnknown"

Path = tuple["str | int", ...]
CrdSchemas = Mapping[tuple[str, str], dict]


@dataclass(frozen=True)
class Violation:
    path: Path  # ("spec", "containers", 0, "image")
    message: str  # the part after "<field>: " in the API server's message
    reason: str  # one of the constants above

    @property
    def field(self) -> str:
        """The path as the API server prints it: spec.containers[0].image."""
        return format_path(self.path)

    @property
    def unknown(self) -> bool:
        return self.reason == UNKNOWN_FIELD

    def __str__(self) -> str:
        if self.unknown:
            return f'unknown field "{self.field}"'
        return f"{self.field}: {self.message}" if self.path else self.message


def format_path(path: Iterable["str | int"]) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def validate(obj: Mapping[str, Any], crds: CrdSchemas | None = None) -> list[Violation]:
    """Every violation of the strict schema of `obj`'s apiVersion/kind, sorted by path.

    [] when the object is valid, and also when no schema is known for its kind: whether the
    kind is served at all is kubeapis.served()'s question, not this one's."""
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    missing = [Violation((name,), "Required value", REQUIRED)
               for name, value in (("apiVersion", api_version), ("kind", kind))
               if not isinstance(value, str) or not value]
    if missing:
        return missing
    crd = (crds or {}).get((api_version, kind))
    if crd is not None:
        return _custom_violations(obj, _structural_validator(json.dumps(crd, sort_keys=True)))
    builtin = _builtin_validator(api_version, kind)
    if builtin is not None:
        from gitopsctl.kuberouting import ROUTING_RULES

        found = list(_violations(builtin, obj))
        rules = ROUTING_RULES.get((api_version, kind))
        return _sorted(found + list(rules(obj)) if rules and not found else found)
    ours = fluxschemas.schema_for(api_version, kind)
    if ours is not None:
        return _custom_violations(obj, _structural_validator(json.dumps(ours, sort_keys=True)))
    return []


def has_schema(api_version: str, kind: str, crds: CrdSchemas | None = None) -> bool:
    return ((api_version, kind) in (crds or {}) or _builtin_validator(api_version, kind) is not None
            or fluxschemas.schema_for(api_version, kind) is not None)


def crd_schemas(objects: Iterable[Any]) -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> openAPIV3Schema of every served version of every
    apiextensions.k8s.io/v1 CustomResourceDefinition among `objects`; others are skipped."""
    found: dict[tuple[str, str], dict] = {}
    for obj in objects:
        if not isinstance(obj, Mapping) or obj.get("apiVersion") != "apiextensions.k8s.io/v1" \
                or obj.get("kind") != "CustomResourceDefinition":
            continue
        spec = obj.get("spec") if isinstance(obj.get("spec"), Mapping) else {}
        group, kind = spec.get("group"), (spec.get("names") or {}).get("kind") \
            if isinstance(spec.get("names"), Mapping) else None
        if not isinstance(group, str) or not isinstance(kind, str):
            continue
        for version in spec.get("versions") or []:
            if not isinstance(version, Mapping) or not version.get("served", False):
                continue
            schema = ((version.get("schema") or {}).get("openAPIV3Schema")
                      if isinstance(version.get("schema"), Mapping) else None)
            if isinstance(schema, Mapping) and isinstance(version.get("name"), str):
                try:
                    found[(f"{group}/{version['name']}", kind)] = _plain(schema)
                except (TypeError, ValueError, RecursionError):
                    continue  # keys JSON cannot hold: the CRD itself is invalid (its own GOC015)
    return found


# -- built-in kinds: kubernetes-validate's strict schemas ------------------------

def _schema_file(api_version: str, kind: str) -> str:
    # kubernetes-validate's file naming: the group's first DNS label, then the version
    # (apps/v1 -> apps-v1, rbac.authorization.k8s.io/v1 -> rbac-v1, v1 -> v1).
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    return f"{kind.lower()}-{group_version}.json"


@lru_cache(maxsize=None)
def _builtin_validator(api_version: str, kind: str):
    resource = kubeapis.lookup(api_version, kind)
    if resource is None or resource.provider != "kubernetes":
        return None
    schema = _package_json(_schema_file(api_version, kind))
    if schema is None:
        return None
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema, registry=_registry())


@lru_cache(maxsize=1)
def _registry():
    from referencing import Registry, Resource

    definitions = _package_json("_definitions.json")
    if definitions is None:
        raise RuntimeError(f"kubernetes-validate has no schemas for Kubernetes {kubeapis.KUBERNETES_RELEASE}: "
                           "reinstall it (pip install --force-reinstall 'kubernetes-validate>=1.33,<2')")
    return Registry().with_resource(_DEFINITIONS_ID, Resource.from_contents(definitions))


def _package_json(name: str) -> Any:
    from importlib.resources import files

    ref = files("kubernetes_validate").joinpath("kubernetes-json-schema", _SCHEMA_DIR, name)
    try:
        return json.loads(ref.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


@lru_cache(maxsize=1)
def _object_meta_validator():
    from jsonschema import Draft202012Validator

    return Draft202012Validator({"$ref": _OBJECT_META}, registry=_registry())


# -- custom resources: structural schemas ---------------------------------------

def _custom_violations(obj: Mapping[str, Any], validator) -> list[Violation]:
    from jsonschema.exceptions import SchemaError, UnknownType

    body = {k: v for k, v in obj.items() if k != "metadata"}
    try:
        found = list(_violations(validator, body))
    except (SchemaError, UnknownType, TypeError, ValueError, KeyError, RecursionError, re.error) as exc:
        # A CRD from the repository whose schema jsonschema cannot apply: say so, once.
        return [Violation((), f"the schema of {obj.get('apiVersion')} {obj.get('kind')} cannot be applied: "
                              f"{str(exc).splitlines()[0][:200]}", INVALID)]
    if "metadata" in obj:
        found += [Violation(("metadata",) + v.path, v.message, v.reason)
                  for v in _violations(_object_meta_validator(), obj["metadata"])]
    return _sorted(found)


@lru_cache(maxsize=64)
def _structural_validator(schema_json: str):
    from jsonschema import Draft4Validator

    schema = _structural(json.loads(schema_json))
    # The API server itself owns these at the root of every custom resource.
    props = schema.setdefault("properties", {})
    for name in ("apiVersion", "kind"):
        props.setdefault(name, {"type": "string"})
    props["metadata"] = {"type": "object"}
    return Draft4Validator(schema)


def _structural(schema: Any) -> Any:
    """An openAPIV3Schema as a JSON schema that refuses what the API server prunes: objects
    with declared properties and no x-kubernetes-preserve-unknown-fields get
    additionalProperties false (apiextensions-apiserver pkg/apiserver/schema/pruning)."""
    if not isinstance(schema, dict):
        return schema
    # Patterns are RE2 (Go) expressions: Python's re reads some differently and backtracks
    # where RE2 cannot, so a hostile value could stall check. They are left out.
    out = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes-") and k not in
           ("nullable", "exclusiveMinimum", "exclusiveMaximum", "format", "default", "description",
            "pattern", "patternProperties")}
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    elif schema.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if "properties" in out:
        out["properties"] = {k: _structural(v) for k, v in out["properties"].items()}
    for key in ("items", "additionalProperties", "not"):
        if isinstance(out.get(key), dict):
            out[key] = _structural(out[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if isinstance(out.get(key), list) and key in schema:
            out[key] = [_structural(s) for s in out[key]]
    if (out.get("type") == "object" and "additionalProperties" not in out
            and not schema.get("x-kubernetes-preserve-unknown-fields")
            and not schema.get("x-kubernetes-embedded-resource")):
        out["additionalProperties"] = False
    return out


def _plain(value: Any) -> Any:
    """A YAML-loaded mapping as plain dicts and lists, so it serialises and caches by value."""
    return json.loads(json.dumps(value, default=str))


# -- jsonschema errors as the API server's field errors --------------------------

def _violations(validator, instance: Any) -> Iterable[Violation]:
    for error in validator.iter_errors(instance):
        yield from _translate(error)


def _translate(error) -> Iterable[Violation]:
    path: Path = tuple(error.absolute_path)
    rule = error.validator
    if rule == "additionalProperties" and isinstance(error.instance, dict):
        declared = set((error.schema.get("properties") or {}))
        for name in sorted(k for k in error.instance if k not in declared):
            yield Violation(path + (name,), "field not declared in schema", UNKNOWN_FIELD)
    elif rule == "required":
        missing = re.match(r"'(.*)' is a required property", error.message)
        yield Violation(path + ((missing.group(1),) if missing else ()), "Required value", REQUIRED)
    elif rule == "type":
        expected = error.validator_value
        expected = " or ".join(t for t in expected if t != "null") if isinstance(expected, list) else expected
        yield Violation(path, f"Invalid value: {_quote(error.instance)}: must be of type {expected}",
                        TYPE_INVALID)
    elif rule == "enum":
        allowed = ", ".join(_quote(v) for v in error.validator_value if v is not None)
        yield Violation(path, f"Unsupported value: {_quote(error.instance)}: supported values: {allowed}",
                        NOT_SUPPORTED)
    elif rule in ("oneOf", "anyOf") and error.context:
        # int-or-string and quantities: one wrong type, reported once.
        yield Violation(path, f"Invalid value: {_quote(error.instance)}: must be of type "
                              f"{_alternatives(error.context)}", TYPE_INVALID)
    else:
        yield Violation(path, f"Invalid value: {_quote(error.instance)}: {error.message}", INVALID)


def _alternatives(context) -> str:
    names: list[str] = []
    for sub in context:
        value = sub.validator_value if sub.validator == "type" else None
        for name in (value if isinstance(value, list) else [value]):
            if isinstance(name, str) and name != "null" and name not in names:
                names.append(name)
    return " or ".join(names) or "the declared type"


def _quote(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, (dict, list)) else \
        ("object" if isinstance(value, dict) else "array")
    return text if len(text) <= 80 else text[:77] + "..."


def _sorted(found: Iterable[Violation]) -> list[Violation]:
    unique = {(v.field, v.message): v for v in found}
    return sorted(unique.values(), key=lambda v: (v.field, v.message))
