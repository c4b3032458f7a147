"""Rules on what manifests say: plaintext Secrets, literal credentials, unpinned images.

Credential findings never quote the value, only where it is and how long it is.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

from gitopsctl.checks import WARNING, Finding
from gitopsctl.checks.documents import YamlFile, position, walk
from gitopsctl.errors import InputError
from gitopsctl.imageref import parse_reference

# Key names (lowercased, '-' and '_' removed) that hold a credential when given a literal.
_CREDENTIAL_SUFFIXES = ("password", "passwd", "passphrase", "secret", "token", "apikey",
                        "accesskey", "privatekey", "credentials", "secretkey")
_VALUE_PATTERNS = (
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a PEM private key"),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), "an AWS access key id"),
    (re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@"), "a URL with a password"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"), "a GitHub token"),
)
_ENV_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)
# Kinds whose values are ciphertext, or whose `image` is a repository name by design.
_SEALED_KINDS = {"SealedSecret"}
_IMAGE_TOOLKIT = "image.toolkit.fluxcd.io/"


def _credential_key(key: Any) -> bool:
    if not isinstance(key, str):
        return False
    normalized = re.sub(r"[-_.]", "", key.lower())
    return normalized.endswith(_CREDENTIAL_SUFFIXES)


def _placeholder(value: str) -> bool:
    """Values that point at a secret instead of being one."""
    stripped = value.strip()
    return (not stripped or stripped.startswith(("${", "$(", "{{")) or
            (stripped.startswith("<") and stripped.endswith(">")))


def plaintext_secrets(file: YamlFile) -> Iterator[Finding]:
    for doc in file.k8s_documents():
        if doc.get("kind") == "Secret" and str(doc.get("apiVersion", "")).strip() == "v1":
            name = (doc.get("metadata") or {}).get("name", "?")
            yield Finding("GOC003", position(doc, "kind", file.display),
                          f"Secret {name!r} is committed in plain text",
                          "seal it: `gitopsctl seal --cert CERT.pem -f secret.yaml > "
                          "secret.sealed.yaml`, commit the SealedSecret and delete this file")


def credentials(file: YamlFile) -> Iterator[Finding]:
    for doc in file.documents:
        if isinstance(doc, dict) and doc.get("kind") in _SEALED_KINDS:
            continue
        if isinstance(doc, dict) and doc.get("kind") == "Secret":
            continue  # already GOC003
        for parent, key, value, _path in walk(doc):
            if not isinstance(value, str):
                continue
            what = _credential_in(parent, key, value)
            if what:
                yield Finding("GOC004", position(parent, key, file.display),
                              f"{what} ({len(value)} characters; value not shown)",
                              "move it into a SealedSecret (`gitopsctl seal`) and reference it "
                              "(secretKeyRef, or the VM's env_file)")


def _credential_in(parent: Any, key: Any, value: str) -> str | None:
    for pattern, label in _VALUE_PATTERNS:
        if pattern.search(value):
            return f"{label} in a manifest"
    if _placeholder(value):
        return None
    if isinstance(parent, dict) and _credential_key(key):
        return f"{key!s} has a literal value"
    # Kubernetes env entries: {name: DB_PASSWORD, value: ...}
    if isinstance(parent, dict) and key == "value" and _credential_key(parent.get("name")):
        return f"env {parent.get('name')} has a literal value"
    # compose list form: - DB_PASSWORD=...
    if isinstance(parent, list):
        match = _ENV_ASSIGNMENT.match(value)
        if match and _credential_key(match.group(1)) and not _placeholder(match.group(2)):
            return f"{match.group(1)} has a literal value"
    return None


def images(file: YamlFile) -> Iterator[Finding]:
    for doc in file.documents:
        if not isinstance(doc, (dict, list)):
            continue
        if isinstance(doc, dict) and str(doc.get("apiVersion", "")).startswith(_IMAGE_TOOLKIT):
            continue  # ImageRepository.spec.image names a repository, not an image
        for parent, key, value, path in walk(doc):
            if not isinstance(parent, dict):
                continue
            if key == "image" and isinstance(value, str):
                finding = _image_finding(value, position(parent, key, file.display))
                if finding:
                    yield finding
            elif key in ("newTag", "tag") and value == "latest" and not parent.get("digest") and \
                    ("name" in parent or "repository" in parent):
                # kustomize `images:` entries and Helm-style {repository, tag} values
                yield Finding("GOC005", position(parent, key, file.display),
                              f"{key}: latest is a moving tag",
                              "pin it to an immutable build tag, or add a digest")


def _image_finding(value: str, where) -> Finding | None:
    text = value.strip()
    if "${" in text or "{{" in text:
        return Finding("GOC005", where, f"image {text!r} is templated; it cannot be checked",
                       "write a literal, pinned reference", severity=WARNING)
    try:
        ref = parse_reference(text)
    except InputError as exc:
        return Finding("GOC005", where, exc.message, exc.hint or "fix the image reference")
    if ref.digest is None and ref.tag is None:
        return Finding("GOC005", where, f"image {text!r} has no tag (it means :latest)",
                       "pin it: name:TAG (a build tag like main-<sha7>-<timestamp>) or "
                       "name@sha256:DIGEST")
    if ref.digest is None and ref.tag == "latest":
        return Finding("GOC005", where, f"image {text!r} uses the moving tag latest",
                       "pin it to an immutable build tag or a digest")
    return None


def compose_healthchecks(file: YamlFile) -> Iterator[Finding]:
    services = file.documents[0].get("services") if file.documents else None
    if not isinstance(services, dict):
        return
    for name, service in services.items():
        if not isinstance(service, dict):
            continue
        check = service.get("healthcheck")
        disabled = isinstance(check, dict) and (check.get("disable") is True or
                                                check.get("test") in (["NONE"], "NONE"))
        if check is None or disabled:
            yield Finding("GOC009", position(services, name, file.display, of_key=True),
                          f"compose service {name!r} has no healthcheck",
                          "add a healthcheck (the image's HEALTHCHECK counts at runtime, but "
                          "sync's `up --wait` and verify read it from here)", severity=WARNING)
