"""Secret manifest -> SealedSecret manifest, shaped as kubeseal prints it."""

from __future__ import annotations

import base64
from typing import Any, Mapping

from cryptography.hazmat.primitives.asymmetric import rsa

from gitopsctl.errors import InputError
from gitopsctl.sealed.hybrid import hybrid_encrypt
from gitopsctl.sealed.resource import (API_VERSION, CLUSTER_WIDE, KIND, SCOPES, SECRET_API_VERSION,
                                       SECRET_KIND, STRICT, encryption_label, scope_of,
                                       with_scope_annotations)
from gitopsctl.sealed.validate import (DNS_LABEL_RE, DNS_SUBDOMAIN_RE, Where, b64decode,
                                       check_data_key, check_name, expect_kind, plain_metadata)

# kubectl/kubecfg keep a full copy of the object, plaintext included, in these.
_LAST_APPLIED = ("kubectl.kubernetes.io/last-applied-configuration",
                 "kubecfg.ksonnet.io/last-applied-configuration")
# Server-side fields kubeseal drops so the template describes a fresh object.
_SERVER_FIELDS = ("selfLink", "uid", "resourceVersion", "generation", "creationTimestamp",
                  "deletionTimestamp", "deletionGracePeriodSeconds", "ownerReferences",
                  "managedFields")


def seal_secret(secret: Mapping[str, Any], public_key: rsa.RSAPublicKey, scope: str = STRICT,
                *, source: str | None = None) -> dict:
    """A SealedSecret manifest for a Secret manifest, shaped as kubeseal prints it.

    As in kubeseal, a non-strict `scope` overrides the Secret's scope annotations, while
    `strict` (the default) keeps a scope the Secret's own annotations already declare.
    """
    if scope not in SCOPES:
        raise InputError(f"unknown scope {scope!r}", hint=f"use one of: {', '.join(SCOPES)}")
    where = Where(secret, source)
    expect_kind(secret, SECRET_API_VERSION, SECRET_KIND, where)
    metadata = plain_metadata(secret, where)
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise where.error("metadata.name is missing", "a SealedSecret is bound to its Secret's name",
                          "metadata")
    check_name(name, "metadata.name", DNS_SUBDOMAIN_RE, 253, where)

    if scope != STRICT:
        metadata["annotations"] = with_scope_annotations(metadata.get("annotations"), scope)
    effective = scope_of(metadata)
    namespace = metadata.get("namespace") or ""
    if not isinstance(namespace, str):
        raise where.error("metadata.namespace must be a string", None, "metadata")
    if namespace:
        check_name(namespace, "metadata.namespace", DNS_LABEL_RE, 63, where)
    elif effective != CLUSTER_WIDE:
        raise where.error(f"metadata.namespace is missing, and scope {effective} binds the "
                          "sealed value to a namespace",
                          "add metadata.namespace, or seal with --scope cluster-wide", "metadata")

    values = _plaintext_values(secret, where)
    label = encryption_label(namespace, name, effective)
    encrypted = {key: base64.b64encode(hybrid_encrypt(public_key, value, label)).decode("ascii")
                 for key, value in sorted(values.items())}

    for field_name in _SERVER_FIELDS:
        metadata.pop(field_name, None)
    if metadata.get("annotations"):
        for key in _LAST_APPLIED:
            metadata["annotations"].pop(key, None)
    if "annotations" in metadata and not metadata["annotations"]:
        del metadata["annotations"]
    metadata["creationTimestamp"] = None

    secret_type = secret.get("type") or "Opaque"
    if not isinstance(secret_type, str):
        raise where.error("type must be a string such as Opaque", None, "type")
    template: dict = {"metadata": metadata, "type": str(secret_type)}
    if "immutable" in secret:
        if not isinstance(secret["immutable"], bool):
            raise where.error("immutable must be true or false", None, "immutable")
        template["immutable"] = secret["immutable"]

    sealed_meta: dict = {"creationTimestamp": None, "name": name}
    if namespace:
        sealed_meta["namespace"] = namespace
    scope_annotations = with_scope_annotations({}, effective)
    if scope_annotations:
        sealed_meta["annotations"] = scope_annotations
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": sealed_meta,
            "spec": {"encryptedData": encrypted, "template": template}}


def _plaintext_values(secret: Mapping[str, Any], where: "Where") -> dict[str, bytes]:
    values: dict[str, bytes] = {}
    for field_name in ("data", "stringData"):
        section = secret.get(field_name)
        if section is None:
            continue
        if not isinstance(section, Mapping):
            raise where.error(f"{field_name} must be a mapping of key: value", None, field_name)
        for key, value in section.items():
            path = f"{field_name}.{key}"
            check_data_key(key, path, where, section)
            if not isinstance(value, str):
                raise where.error(f"{path} must be a string",
                                  "quote the value in YAML", field_name, section, key)
            if field_name == "data":
                values[key] = b64decode(value, path, where.source, where.line(section, key))
            else:  # stringData wins over data, as the API server merges them
                values[key] = value.encode("utf-8")
    if not values:
        raise where.error("the Secret has no data or stringData",
                          "an empty SealedSecret is almost always a mistake; add the values to seal",
                          None)
    return values
