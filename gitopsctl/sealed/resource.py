"""The SealedSecret resource: kinds, scopes and the RSA-OAEP label each scope implies."""

from __future__ import annotations

from typing import Any, Mapping

API_VERSION = "bitnami.com/v1alpha1"
KIND = "SealedSecret"
SECRET_API_VERSION = "v1"
SECRET_KIND = "Secret"

STRICT = "strict"
NAMESPACE_WIDE = "namespace-wide"
CLUSTER_WIDE = "cluster-wide"
SCOPES = (STRICT, NAMESPACE_WIDE, CLUSTER_WIDE)

ANNOTATION_NAMESPACE_WIDE = "sealedsecrets.bitnami.com/namespace-wide"
ANNOTATION_CLUSTER_WIDE = "sealedsecrets.bitnami.com/cluster-wide"


def encryption_label(namespace: str, name: str, scope: str) -> bytes:
    """The RSA-OAEP label that pins a value to its scope (kubeseal's EncryptionLabel)."""
    if scope == CLUSTER_WIDE:
        return b""
    if scope == NAMESPACE_WIDE:
        return namespace.encode()
    if scope == STRICT:
        return f"{namespace}/{name}".encode()
    raise ValueError(f"unknown scope {scope!r}")


def scope_of(metadata: Mapping[str, Any] | None) -> str:
    """The scope the annotations declare; cluster-wide wins, as in the controller."""
    annotations = (metadata or {}).get("annotations") or {}
    if not isinstance(annotations, Mapping):
        return STRICT
    if annotations.get(ANNOTATION_CLUSTER_WIDE) == "true":
        return CLUSTER_WIDE
    if annotations.get(ANNOTATION_NAMESPACE_WIDE) == "true":
        return NAMESPACE_WIDE
    return STRICT


def with_scope_annotations(annotations: Mapping[str, Any] | None, scope: str) -> dict:
    """`annotations` with exactly the scope annotations `scope` needs (none for strict)."""
    out = {k: v for k, v in (annotations or {}).items()
           if k not in (ANNOTATION_NAMESPACE_WIDE, ANNOTATION_CLUSTER_WIDE)}
    if scope == NAMESPACE_WIDE:
        out[ANNOTATION_NAMESPACE_WIDE] = "true"
    elif scope == CLUSTER_WIDE:
        out[ANNOTATION_CLUSTER_WIDE] = "true"
    return out
