"""Checks on manifest fields, reported as InputError with file:line where known."""

from __future__ import annotations

import base64
import binascii
import copy
import re
from dataclasses import dataclass
from typing import Any, Mapping

from gitopsctl.errors import InputError, Location
from gitopsctl.sealed.yamlio import line_of, to_plain

DATA_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")
DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass
class Where:
    """Turns a field of the input document into file:line for error messages."""

    doc: Mapping[str, Any]
    source: str | None

    def line(self, node: Any, key: Any) -> int | None:
        return line_of(node, key)

    def error(self, message: str, hint: str | None, key: str | None,
              node: Any = None, subkey: Any = None) -> InputError:
        line = None
        if node is not None and subkey is not None:
            line = line_of(node, subkey)
        if line is None and key is not None:
            line = line_of(self.doc, key)
        location = Location(self.source, line) if self.source else None
        return InputError(message, hint=hint, location=location)


def expect_kind(doc: Mapping[str, Any], api_version: str, kind: str, where: Where) -> None:
    if not isinstance(doc, Mapping):
        raise InputError("the manifest is not a mapping")
    if doc.get("kind") != kind:
        raise where.error(f"expected kind {kind}, found {doc.get('kind')!r}",
                          "`gitopsctl seal` takes a Secret, `gitopsctl unseal` a SealedSecret",
                          "kind")
    if doc.get("apiVersion", api_version) != api_version:
        raise where.error(f"expected apiVersion {api_version}, found {doc.get('apiVersion')!r}",
                          None, "apiVersion")


def plain_metadata(secret: Mapping[str, Any], where: Where) -> dict:
    metadata = secret.get("metadata")
    if not isinstance(metadata, Mapping):
        raise where.error("metadata is missing", "a Secret needs metadata.name and "
                          "metadata.namespace", None)
    for field_name in ("labels", "annotations"):
        section = metadata.get(field_name)
        if section is None:
            continue
        if not isinstance(section, Mapping):
            raise where.error(f"metadata.{field_name} must be a mapping", None, "metadata")
        for key, value in section.items():
            if not isinstance(value, str):
                raise where.error(f"metadata.{field_name}.{key} must be a string",
                                  "quote the value, e.g. \"true\" or \"8080\"", "metadata",
                                  section, key)
    return copy.deepcopy(to_plain(metadata))


def check_name(value: str, path: str, pattern: re.Pattern, limit: int, where: Where) -> None:
    if len(value) > limit or not pattern.match(value):
        raise where.error(f"{path} {value!r} is not a valid Kubernetes name",
                          "use lowercase letters, digits and '-'" +
                          (" or '.'" if limit == 253 else "") + f", at most {limit} characters",
                          "metadata")


def check_data_key(key: Any, path: str, where: Where, section: Any) -> None:
    if not isinstance(key, str) or len(key) > 253 or not DATA_KEY_RE.match(key) \
            or key in (".", ".."):
        raise where.error(f"{path}: {key!r} is not a valid Secret key",
                          "keys may hold letters, digits, '-', '_' and '.'", None, section, key)


DATA_B64_HINT = "values under `data:` are base64; put plain text under `stringData:` instead"


def b64decode(value: str, path: str, source: str | None, line: int | None = None,
              hint: str = DATA_B64_HINT) -> bytes:
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{path} is not valid base64", hint=hint,
                         location=Location(source, line) if source else None) from None
