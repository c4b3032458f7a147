"""OCI image references: parse, validate and format name[:tag][@digest].

The grammar is the one of the distribution project's `reference` package (the one
docker, containerd, Harbor and Flux all accept). References are kept exactly as
written: no `docker.io/library/` normalisation, because bump must write back the
spelling the user chose.

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [domain "/"] path
    domain     := host [":" port]
    path       := component ("/" component)*
    component  := [a-z0-9]+ ((\\.|_|__|-+) [a-z0-9]+)*
    tag        := [\\w][\\w.-]{0,127}
    digest     := algorithm ":" hex{32,}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from gitopsctl.errors import InputError, Location

NAME_MAX_LENGTH = 255

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN_RE = re.compile(rf"^{_HOST}(?::[0-9]+)?$")
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$", re.ASCII)
_DIGEST_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$")
# Algorithms whose hex length is fixed; others only need the grammar's 32+ hex digits.
_DIGEST_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}

_HINT = "write it like harbor.lan/homelab/frontend:main-1a2b3c4-1764160000 (optionally @sha256:<64 hex>)"


@dataclass(frozen=True)
class ImageReference:
    """One parsed reference. `domain` is "" when the reference names none."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def registry(self) -> str:
        return self.domain

    @property
    def name(self) -> str:
        """domain/path, the part Flux's `:name` setter writes."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    def with_tag(self, tag: str | None) -> "ImageReference":
        if tag is not None:
            _check_tag(tag, tag)
        return replace(self, tag=tag)

    def with_digest(self, digest: str | None) -> "ImageReference":
        if digest is not None:
            _check_digest(digest, digest)
        return replace(self, digest=digest)

    def without_digest(self) -> "ImageReference":
        return replace(self, digest=None)

    @property
    def pinned(self) -> bool:
        """True when it names an immutable image: a digest, or a tag other than `latest`."""
        return self.digest is not None or (self.tag is not None and self.tag != "latest")

    def __str__(self) -> str:
        out = self.name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out


def parse_reference(text: str, *, location: Location | None = None) -> ImageReference:
    """Parse and validate `text`; raise InputError saying which part is wrong."""
    if not isinstance(text, str) or not text:
        raise InputError("empty image reference", location=location, hint=_HINT)
    if text != text.strip() or any(ch.isspace() for ch in text):
        raise InputError(f"image reference {text!r} contains whitespace", location=location,
                         hint=_HINT)
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        _check_digest(digest, text, location)
    tag = None
    # A ':' after the last '/' separates the tag; one before it belongs to a registry port.
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        _check_tag(tag, text, location)
    name = rest
    if not name:
        raise InputError(f"image reference {text!r} has no repository name", location=location,
                         hint=_HINT)
    if len(name) > NAME_MAX_LENGTH:
        raise InputError(f"image reference {text!r}: repository name longer than "
                         f"{NAME_MAX_LENGTH} characters", location=location, hint=_HINT)
    domain, path = _split_domain(name)
    if domain and not _DOMAIN_RE.match(domain):
        raise InputError(f"image reference {text!r}: {domain!r} is not a valid registry host[:port]",
                         location=location, hint=_HINT)
    if not _PATH_RE.match(path):
        raise InputError(
            f"image reference {text!r}: repository path {path!r} is not valid",
            location=location,
            hint="path components are lowercase letters and digits, separated by '.', '_', '__' "
                 "or dashes, joined by '/'")
    return ImageReference(domain=domain, path=path, tag=tag, digest=digest)


def is_valid_reference(text: str) -> bool:
    try:
        parse_reference(text)
    except InputError:
        return False
    return True


def _split_domain(name: str) -> tuple[str, str]:
    """The distribution rule: the first component is a registry if it looks like a host."""
    first, sep, remainder = name.partition("/")
    if not sep:
        return "", name
    if "." in first or ":" in first or first == "localhost" or first.lower() != first:
        return first, remainder
    return "", name


def _check_tag(tag: str, whole: str, location: Location | None = None) -> None:
    if not _TAG_RE.match(tag):
        raise InputError(f"image reference {whole!r}: tag {tag!r} is not valid",
                         location=location,
                         hint="a tag is 1-128 characters of letters, digits, '_', '.' and '-', "
                              "not starting with '.' or '-'")


def _check_digest(digest: str, whole: str, location: Location | None = None) -> None:
    if not _DIGEST_RE.match(digest):
        raise InputError(f"image reference {whole!r}: digest {digest!r} is not valid",
                         location=location, hint="a digest looks like sha256:<64 hex digits>")
    algorithm, hex_part = digest.split(":", 1)
    expected = _DIGEST_HEX_LENGTH.get(algorithm)
    if expected is not None and len(hex_part) != expected:
        raise InputError(f"image reference {whole!r}: a {algorithm} digest has {expected} hex "
                         f"digits, this one has {len(hex_part)}", location=location,
                         hint="copy the digest the registry reported, e.g. from `gitopsctl build`")
