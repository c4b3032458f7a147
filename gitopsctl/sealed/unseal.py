"""SealedSecret manifest -> decrypted values, or the Secret the controller would create."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Union

from cryptography.hazmat.primitives.asymmetric import rsa

from gitopsctl import redact
from gitopsctl.errors import InputError, Location
from gitopsctl.sealed.hybrid import DecryptFailure, hybrid_decrypt
from gitopsctl.sealed.resource import (API_VERSION, CLUSTER_WIDE, KIND, SCOPES, SECRET_API_VERSION,
                                       SECRET_KIND, encryption_label, scope_of)
from gitopsctl.sealed.validate import Where, b64decode, check_data_key, expect_kind
from gitopsctl.sealed.yamlio import to_plain

PrivateKeys = Union[rsa.RSAPrivateKey, Sequence[rsa.RSAPrivateKey]]


def decrypted_items(sealed: Mapping[str, Any], private_key: PrivateKeys, *,
                    source: str | None = None) -> dict[str, bytes]:
    """Every spec.encryptedData value of a SealedSecret, decrypted; all or nothing.

    Each value is registered with gitopsctl.redact the moment it is decrypted, so no
    output of this process (sync's JSON with container logs, errors) can carry it.
    """
    where = Where(sealed, source)
    keys = _key_list(private_key)
    parts = _SealedParts.of(sealed, where)
    name, namespace, scope, encrypted = parts.name, parts.namespace, parts.scope, parts.encrypted

    label = encryption_label(namespace, name, scope)
    out: dict[str, bytes] = {}
    failures: list[tuple[str, DecryptFailure]] = []
    for key in sorted(encrypted):
        value = encrypted[key]
        path = f"spec.encryptedData.{key}"
        blob = b64decode(value, path, where.source, where.line(encrypted, key),
                         hint="the value was corrupted; restore it from git or seal it again")
        try:
            out[key] = _decrypt_with_any(keys, blob, label)
            redact.register(out[key])
        except DecryptFailure as exc:
            failures.append((key, exc))
    if failures:
        raise _unseal_error(failures, keys, parts, where)
    return out


@dataclass(frozen=True)
class _SealedParts:
    """The fields of a SealedSecret unsealing reads, checked for type and presence."""

    name: str
    namespace: str
    scope: str
    encrypted: Mapping[str, str]
    template: Mapping[str, Any]
    template_metadata: Mapping[str, Any]

    @classmethod
    def of(cls, sealed: Mapping[str, Any], where: "Where") -> "_SealedParts":
        expect_kind(sealed, API_VERSION, KIND, where)
        metadata = sealed.get("metadata")
        if not isinstance(metadata, Mapping):
            raise where.error("metadata is missing", None, None)
        name = metadata.get("name")
        if not isinstance(name, str) or not name:
            raise where.error("metadata.name is missing", "the name is part of what was sealed",
                              "metadata")
        namespace = metadata.get("namespace") or ""
        if not isinstance(namespace, str):
            raise where.error("metadata.namespace must be a string", None, "metadata")
        if not isinstance(metadata.get("annotations") or {}, Mapping):
            raise where.error("metadata.annotations must be a mapping", None, "metadata")
        scope = scope_of(metadata)
        if not namespace and scope != CLUSTER_WIDE:
            raise where.error(f"metadata.namespace is missing; a {scope} SealedSecret can only "
                              "be unsealed in the namespace it was sealed for",
                              "add metadata.namespace as it was when sealed", "metadata")
        spec = sealed.get("spec")
        if not isinstance(spec, Mapping):
            raise where.error("spec is missing", None, None)
        if spec.get("data"):
            raise where.error("spec.data (the pre-0.9 single-blob format) is not supported",
                              "re-seal the Secret with a current kubeseal or `gitopsctl seal`",
                              "spec")
        template = spec.get("template") or {}
        template_metadata = template.get("metadata") or {} if isinstance(template, Mapping) else None
        if not isinstance(template_metadata, Mapping):
            raise where.error("spec.template and spec.template.metadata must be mappings", None,
                              "spec")
        if template.get("data"):
            raise where.error("spec.template.data (templated values) is not supported",
                              "unseal needs literal values; remove the template data", "spec")
        if not isinstance(template.get("type") or "", str):
            raise where.error("spec.template.type must be a string", None, "spec")
        encrypted = spec.get("encryptedData")
        if not isinstance(encrypted, Mapping) or not encrypted:
            raise where.error("spec.encryptedData is missing or empty", None, "spec")
        for key, value in encrypted.items():
            check_data_key(key, f"spec.encryptedData.{key}", where, encrypted)
            if not isinstance(value, str):
                raise where.error(f"spec.encryptedData.{key} must be a base64 string", None,
                                  "spec", encrypted, key)
        return cls(name=name, namespace=namespace, scope=scope, encrypted=encrypted,
                   template=template, template_metadata=template_metadata)


def unseal_secret(sealed: Mapping[str, Any], private_key: PrivateKeys, *,
                  source: str | None = None) -> dict:
    """The Secret the controller would create, data base64-encoded as Kubernetes stores it."""
    items = decrypted_items(sealed, private_key, source=source)
    parts = _SealedParts.of(sealed, Where(sealed, source))
    template = parts.template
    metadata = to_plain(parts.template_metadata)
    metadata["name"] = parts.name
    if parts.namespace:
        metadata["namespace"] = parts.namespace
    else:
        metadata.pop("namespace", None)
    for empty in [k for k in ("labels", "annotations") if not metadata.get(k)]:
        metadata.pop(empty, None)
    metadata.setdefault("creationTimestamp", None)
    secret: dict = {"apiVersion": SECRET_API_VERSION, "kind": SECRET_KIND,
                    "metadata": metadata,
                    "data": {k: base64.b64encode(v).decode("ascii") for k, v in items.items()},
                    "type": template.get("type") or "Opaque"}
    if isinstance(template.get("immutable"), bool):
        secret["immutable"] = template["immutable"]
    return secret


def _key_list(private_key: PrivateKeys) -> list[rsa.RSAPrivateKey]:
    keys = [private_key] if isinstance(private_key, rsa.RSAPrivateKey) else list(private_key)
    if not keys or not all(isinstance(k, rsa.RSAPrivateKey) for k in keys):
        raise TypeError("private_key must be an RSA private key or a sequence of them")
    return keys


def _decrypt_with_any(keys: Sequence[rsa.RSAPrivateKey], blob: bytes, label: bytes) -> bytes:
    """Try each key as the controller does after key rotation; report the most telling failure."""
    failures = []
    for key in keys:
        try:
            return hybrid_decrypt(key, blob, label)
        except DecryptFailure as exc:
            failures.append(exc)
    rank = {DecryptFailure.AUTHENTICATION: 0, DecryptFailure.TRUNCATED: 1,
            DecryptFailure.UNWRAP: 2, DecryptFailure.KEY_SIZE: 3}
    raise min(failures, key=lambda f: rank[f.reason])


def _unseal_error(failures: list[tuple[str, DecryptFailure]], keys: Sequence[rsa.RSAPrivateKey],
                  parts: _SealedParts, where: "Where") -> InputError:
    names = ", ".join(key for key, _ in failures)
    first_key, first = failures[0]
    line = where.line(parts.encrypted, first_key)
    if first.reason == DecryptFailure.AUTHENTICATION:
        message = (f"cannot unseal {names}: the encrypted data was modified "
                   "(AES-GCM authentication failed)")
        hint = "restore the SealedSecret from git history or seal the value again"
    elif first.reason == DecryptFailure.TRUNCATED:
        message = f"cannot unseal {names}: the value is truncated ({first.detail})"
        hint = "the value was cut or corrupted; seal it again"
    elif first.reason == DecryptFailure.KEY_SIZE:
        message = f"cannot unseal {names}: it was sealed for a different key ({first.detail})"
        hint = ("seal it with the certificate that belongs to this key "
                "(the VM's own public key, not the cluster controller's, or vice versa)")
    else:
        found = _diagnose_label(keys, parts.encrypted[first_key], parts)
        if found:
            message = f"cannot unseal {names}: {found}"
            hint = ("a SealedSecret must keep the name, namespace and scope it was sealed with; "
                    "restore them or seal the value again")
        else:
            message = (f"cannot unseal {names}: the session key does not decrypt with this key "
                       "and this SealedSecret's name/namespace/scope")
            hint = ("check that it was sealed with the public key of this private key, that "
                    "metadata.name/namespace and the scope annotations are unchanged since "
                    "sealing, and that the value was not modified")
    return InputError(message, hint=hint,
                      location=Location(where.source, line) if where.source else None,
                      details={"keys": [key for key, _ in failures], "reason": first.reason})


def _diagnose_label(keys: Sequence[rsa.RSAPrivateKey], value: str,
                    parts: _SealedParts) -> str | None:
    """If the value opens under another scope or the template's name/namespace, say which.

    Only tries a handful of labels derived from the manifest itself, so it costs a few RSA
    operations and reveals nothing but metadata.
    """
    declared = parts.scope
    identities = [(parts.namespace, parts.name)]
    template_identity = (parts.template_metadata.get("namespace") or "",
                         parts.template_metadata.get("name") or "")
    if template_identity != identities[0] and all(isinstance(x, str) for x in template_identity):
        identities.append(template_identity)
    try:
        blob = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    tried: set[bytes] = {encryption_label(identities[0][0], identities[0][1], declared)}
    for namespace, name in identities:
        for scope in SCOPES:
            label = encryption_label(namespace, name, scope)
            if label in tried:
                continue
            tried.add(label)
            try:
                _decrypt_with_any(keys, blob, label)
            except DecryptFailure:
                continue
            if scope != declared:
                return (f"it was sealed with scope {scope} but the manifest declares {declared} "
                        "(scope annotations changed)")
            return (f"it was sealed for {namespace}/{name} but the manifest says "
                    f"{identities[0][0]}/{identities[0][1]} (renamed or moved)")
    return None
