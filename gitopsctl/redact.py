"""No secret leaves gitopsctl: one process-wide set of values to hide, plus credential patterns.

Whoever reads a secret registers it where it is read (sealed.unseal: every decrypted
value; targets.kubeapi: kubeconfig tokens, passwords, client keys; registry: the
registry password and docker config auths). Everything that leaves the process
(Reporter lines, rendered results, the JSON document, errors, commit messages) passes
through redact(), which replaces registered values and these patterns with MARKER:

- URL userinfo, `scheme://user:password@host` -> `scheme://[REDACTED]@host` (a token
  often travels as the user name, so the whole userinfo goes);
- `Authorization: <scheme> <credentials>` and a bare `Bearer <token>`, `Basic <user:pass>`;
- credential key/value pairs: `PASSWORD=...`, `--client-secret=...`, and JSON-quoted keys
  such as `"password": "..."`, `"auth": "..."` (a docker config), `"token": "..."`.

The rule for short values, so that redaction cannot destroy ordinary output: a value
shorter than MIN_LENGTH (4) characters is not registered at all (hiding "1" or "on"
would erase every such character, and such a value protects nothing); one shorter than
ANYWHERE_LENGTH (8) is hidden only where it stands as a whole token, not inside a longer
word or number; longer values are hidden wherever they occur. Values that are part of
MARKER itself are not registered either (the marker is public).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from typing import Any, Callable, Iterable

MARKER = "[REDACTED]"
MIN_LENGTH = 4
ANYWHERE_LENGTH = 8
_WORD_CHAR = re.compile(r"[A-Za-z0-9]")

_lock = threading.Lock()
_values: set[str] = set()
_ordered: tuple[str, ...] = ()   # longest first, rebuilt on register

_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#\"'<>`]*@")
_AUTH_HEADER = re.compile(
    r"(?i)(?P<key>\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)"
    r"(?:(?P<scheme>bearer|basic|token|digest|negotiate|aws4-hmac-sha256)\s+)?[^\r\n\"']+")
_BEARER = re.compile(r"\bBearer\s+(?=[A-Za-z0-9._~+/=-]*[0-9._~+/=-])[A-Za-z0-9._~+/-]{8,}=*")
_BASIC = re.compile(r"\bBasic\s+(?P<blob>[A-Za-z0-9+/]{8,}={0,2})")
# Keys whose value is a credential: as KEY=value (environment dumps, --flag=value) and as
# a quoted JSON key ("password": "..."). Not as unquoted YAML `password: ...`: that is how
# the manifests gitopsctl prints name their keys (a SealedSecret's encryptedData.password).
_CREDENTIAL_NAMES = (r"password|passwd|client[-_]key[-_]data|client[-_]secret|identitytoken|"
                     r"registrytoken|(?:id|access|refresh|bearer)[-_]token|api[-_]?key")
_SECRET_KEY = re.compile(
    rf"(?i)(?P<key>(?P<q>[\"'])(?:{_CREDENTIAL_NAMES}|auth|token)(?P=q)\s*:\s*[\"']?"
    rf"|(?<![A-Za-z0-9])(?:{_CREDENTIAL_NAMES})\s*=\s*[\"']?)"
    r"(?P<value>[^\s\"',}]+)")


def register(value: str | bytes | None) -> None:
    """Hide `value` (and each of its lines, and its JSON/repr-escaped forms) from now on."""
    if value is None:
        return
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return  # cannot appear in text output as such
    candidates = {value.strip()}
    candidates.update(line.strip() for line in value.splitlines())
    for text in list(candidates):
        candidates.add(json.dumps(text)[1:-1])
        candidates.add(repr(text)[1:-1])
    fresh = {c for c in candidates if len(c) >= MIN_LENGTH and c not in MARKER}
    global _ordered
    with _lock:
        if fresh <= _values:
            return
        _values.update(fresh)
        _ordered = tuple(sorted(_values, key=len, reverse=True))


def register_all(values: Iterable[str | bytes | None]) -> None:
    for value in values:
        register(value)


def reset() -> None:
    """Forget every registered value (tests that run in one process)."""
    global _ordered
    with _lock:
        _values.clear()
        _ordered = ()


def redact(text: str) -> str:
    """`text` with every registered value and credential pattern replaced by MARKER."""
    if not isinstance(text, str) or not text:
        return text
    values = _ordered
    out = _patterns(_hide_values(text, values))
    # A replacement can join its neighbours into a registered value again (only for
    # values that share characters with MARKER); a bounded number of passes settles it.
    for _ in range(3):
        if not any(_occurs(out, v) for v in values):
            return out
        out = _hide_values(out, values)
    return MARKER if any(_occurs(out, v) for v in values) else out


def redact_obj(obj: Any) -> Any:
    """A redacted copy of a JSON-able document; keys too, and str() of anything else."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {redact_obj(k) if isinstance(k, str) else k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_obj(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float)):
        return obj
    return redact(str(obj))


class RedactingFile:
    """A text stream that redacts every write; `target` is called per write, so a
    swapped sys.stdout/sys.stderr is honoured. Everything else is delegated (rich asks
    isatty, encoding, fileno)."""

    def __init__(self, target: Callable[[], Any]):
        self._target = target

    def write(self, text: str) -> int:
        self._target().write(redact(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target(), name)


# ---------------------------------------------------------------- internals

def _occurs(text: str, value: str) -> bool:
    return bool(_spans(text, value, first_only=True))


def _spans(text: str, value: str, first_only: bool = False) -> list[tuple[int, int]]:
    """Every (overlapping) occurrence of value; short values only as whole tokens."""
    found = []
    whole_token = len(value) < ANYWHERE_LENGTH
    start = text.find(value)
    while start != -1:
        end = start + len(value)
        if not whole_token or (_boundary(text, start - 1) and _boundary(text, end)):
            found.append((start, end))
            if first_only:
                break
        start = text.find(value, start + 1)
    return found


def _boundary(text: str, index: int) -> bool:
    return index < 0 or index >= len(text) or not _WORD_CHAR.match(text[index])


def _hide_values(text: str, values: tuple[str, ...]) -> str:
    # Overlapping secrets are merged into one span, so no tail of one survives the other.
    spans = sorted(s for v in values if v in text for s in _spans(text, v))
    if not spans:
        return text
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    parts, last = [], 0
    for start, end in merged:
        parts.append(text[last:start])
        parts.append(MARKER)
        last = end
    parts.append(text[last:])
    return "".join(parts)


def _patterns(text: str) -> str:
    if "://" in text:
        text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MARKER}@", text)
    lowered = text.lower()
    if "authorization" in lowered:
        text = _AUTH_HEADER.sub(_auth_header, text)
    if "Bearer" in text:
        text = _BEARER.sub(f"Bearer {MARKER}", text)
    if "Basic" in text:
        text = _BASIC.sub(_basic, text)
    text = _SECRET_KEY.sub(_secret_value, text)
    return text


def _auth_header(m: re.Match) -> str:
    scheme = f"{m.group('scheme')} " if m.group("scheme") else ""
    return f"{m.group('key')}{scheme}{MARKER}"


def _basic(m: re.Match) -> str:
    # Only a blob that decodes to user:password; "Basic authentication" stays as it is.
    try:
        decoded = base64.b64decode(m.group("blob"), validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return m.group(0)
    return f"Basic {MARKER}" if ":" in decoded else m.group(0)


def _secret_value(m: re.Match) -> str:
    value = m.group("value")
    if value == MARKER or value.startswith(MARKER):
        return m.group(0)
    return f"{m.group('key')}{MARKER}"
