"""A small registry v2 client: auth challenges, manifest digests, tags.

Harbor (and Distribution with token auth) answers an anonymous request with 401 and
`WWW-Authenticate: Bearer realm="https://harbor.lan/service/token",service="harbor-registry"`.
The client then asks the realm for a token for the scope it needs, presenting the
robot account with Basic auth, and repeats the request with `Authorization: Bearer`.
A plain htpasswd registry challenges with `Basic realm=...` instead.

Credentials come from the environment (config.registry.username_env/password_env) or
from a docker config.json; they never appear in messages, errors or reprs.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from gitopsctl import redact
from gitopsctl.errors import ConfigError, ExternalError, InputError, Location

# Everything a push may have produced; the registry picks the matching one.
MANIFEST_ACCEPT = ", ".join((
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
))
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_CHALLENGE_PARAM = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')
_RETRYABLE_STATUS = {429, 500, 502, 503, 504}


# ---------------------------------------------------------------- credentials


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    source: str = "environment"  # where they came from, safe to print

    def __post_init__(self) -> None:
        # hidden from every output of this process, in whatever form a message may quote it
        redact.register(self.password)
        redact.register(base64.b64encode(f"{self.username}:{self.password}".encode()).decode())

    def __repr__(self) -> str:  # never a secret in a traceback or a log line
        return f"Credentials(source={self.source!r})"

    def docker_auth_config(self) -> dict[str, str]:
        return {"username": self.username, "password": self.password}


def load_credentials(registry_cfg, environ: Mapping[str, str] | None = None) -> Credentials | None:
    """Credentials for config.registry: environment first, then docker config.json.

    None means anonymous access. Half a pair in the environment is a config error.
    """
    environ = os.environ if environ is None else environ
    user_var, pass_var = registry_cfg.username_env, registry_cfg.password_env
    user, password = environ.get(user_var), environ.get(pass_var)
    redact.register(password)
    if user and password:
        return Credentials(user, password, source=f"${user_var}/${pass_var}")
    if user or password:
        missing = pass_var if user else user_var
        raise ConfigError(f"registry credentials are incomplete: ${missing} is not set",
                          hint=f"set both ${user_var} and ${pass_var} (a Harbor robot account "
                               "such as robot$homelab+ci and its secret), or neither")
    return credentials_from_docker_config(registry_cfg.host, environ)


def credentials_from_docker_config(host: str, environ: Mapping[str, str]) -> Credentials | None:
    config_dir = environ.get("DOCKER_CONFIG") or str(Path(environ.get("HOME", "~")).expanduser()
                                                     / ".docker")
    path = Path(config_dir).expanduser() / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc.msg}",
                          location=Location(str(path), exc.lineno, exc.colno),
                          hint="fix the file or run `docker login` again") from None
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        return None
    for entry in auths.values():  # every host's, not only ours: a message may quote any
        if isinstance(entry, dict):
            redact.register_all(entry.get(k) for k in ("auth", "password", "identitytoken",
                                                       "registrytoken")
                                if isinstance(entry.get(k), str))
    for key, entry in auths.items():
        if _auth_key_host(key) != host or not isinstance(entry, dict):
            continue
        user, password = entry.get("username"), entry.get("password")
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise ConfigError(f"{path}: the auth entry for {key} is not base64 user:password",
                                  hint="run `docker login` again") from None
        if user and password:
            return Credentials(user, password, source=str(path))
    return None


def _auth_key_host(key: str) -> str:
    """config.json keys appear as host, https://host, or https://host/v1/."""
    return re.sub(r"^[a-z]+://", "", key).split("/", 1)[0]


# ---------------------------------------------------------------- challenges


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" or "bearer", lower case
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge:
    """Parse one WWW-Authenticate challenge: `Bearer realm="...",service="...",scope="..."`."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme or not re.match(r"^[A-Za-z][A-Za-z0-9_-]*$", scheme):
        raise InputError(f"registry sent an unreadable WWW-Authenticate header: {header[:120]!r}")
    params = {}
    for match in _CHALLENGE_PARAM.finditer(rest):
        quoted, bare = match.group(2), match.group(3)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        params[match.group(1).lower()] = value
    return Challenge(scheme.lower(), params)


# ---------------------------------------------------------------- client


@dataclass
class RegistryClient:
    """Talks to one registry host; tokens are cached per scope for the client's lifetime."""

    host: str
    scheme: str = "https"
    credentials: Credentials | None = None
    timeout: float = 10.0
    attempts: int = 3          # bounded: total tries for a network error or 5xx
    backoff: float = 0.5       # seconds, doubled per retry
    sleep: Callable[[float], None] = time.sleep
    _tokens: dict[str, str] = field(default_factory=dict, repr=False)
    _session: Any = field(default=None, repr=False)

    @classmethod
    def for_config(cls, registry_cfg, environ: Mapping[str, str] | None = None,
                   **kwargs: Any) -> "RegistryClient":
        return cls(host=registry_cfg.host, scheme=registry_cfg.scheme,
                   credentials=load_credentials(registry_cfg, environ), **kwargs)

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def check(self) -> None:
        """Reachable and accepting our credentials, or ExternalError with URL and status."""
        self._request("GET", "/v2/", scope=None)

    def manifest_digest(self, repository: str, reference: str) -> str:
        """The Docker-Content-Digest of repository:reference, read with a HEAD request."""
        path = f"/v2/{repository}/manifests/{reference}"
        resp = self._request("HEAD", path, scope=f"repository:{repository}:pull",
                             headers={"Accept": MANIFEST_ACCEPT}, allow_404=True)
        if resp.status_code == 404:
            raise ExternalError(f"{self.base_url}{path}: manifest not found (HTTP 404)",
                                hint="the push did not complete, or the tag was deleted")
        digest = resp.headers.get("Docker-Content-Digest", "")
        if not DIGEST_RE.match(digest):
            raise ExternalError(f"{self.base_url}{path}: no valid Docker-Content-Digest header "
                                f"(got {digest[:80]!r})",
                                hint="is this a v2 registry? Harbor and Distribution both send it")
        return digest

    def tags(self, repository: str, page_size: int = 100, max_pages: int = 100) -> list[str]:
        """All tags of a repository, following Link pagination (bounded)."""
        out: list[str] = []
        path: str | None = f"/v2/{repository}/tags/list?n={page_size}"
        for _ in range(max_pages):
            if path is None:
                break
            resp = self._request("GET", path, scope=f"repository:{repository}:pull",
                                 allow_404=True)
            if resp.status_code == 404:
                return []
            out.extend(resp.json().get("tags") or [])
            path = _next_link(resp.headers.get("Link", ""))
        return out

    # ------------------------------------------------------------- plumbing

    def _session_obj(self):
        if self._session is None:
            import requests

            self._session = requests.Session()
            # A proxy from the environment must not see loopback registry traffic.
            self._session.trust_env = not self.host.startswith(("127.", "localhost", "[::1]"))
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _request(self, method: str, path: str, *, scope: str | None,
                 headers: dict[str, str] | None = None, allow_404: bool = False):
        url = f"{self.base_url}{path}"
        headers = dict(headers or {})
        # Basic credentials fit every scope; Bearer tokens only the scope they were issued for.
        auth_header = self._tokens.get(scope or "") or self._tokens.get("*basic")
        if auth_header:
            headers["Authorization"] = auth_header
        resp = self._send(method, url, headers)
        if resp.status_code == 401:
            challenge = resp.headers.get("WWW-Authenticate", "")
            headers["Authorization"] = self._authorize(url, challenge, scope)
            key = "*basic" if headers["Authorization"].startswith("Basic ") else scope or ""
            self._tokens[key] = headers["Authorization"]
            resp = self._send(method, url, headers)
            if resp.status_code == 401:
                self._tokens.pop(key, None)
                raise ExternalError(f"{_redact_url(url)}: the registry refused our credentials "
                                    "(HTTP 401)", hint=self._credential_hint())
        if resp.status_code == 403:
            raise ExternalError(f"{_redact_url(url)}: access denied (HTTP 403)",
                                hint="give the robot account push and pull permission on "
                                     "the project")
        if resp.status_code == 404 and allow_404:
            return resp
        if resp.status_code >= 400:
            raise ExternalError(f"{_redact_url(url)}: HTTP {resp.status_code} {resp.reason}",
                                details={"url": _redact_url(url), "status": resp.status_code})
        return resp

    def _authorize(self, url: str, header: str, scope: str | None) -> str:
        if not header:
            raise ExternalError(f"{_redact_url(url)}: HTTP 401 without a WWW-Authenticate "
                                "challenge", hint="is this a v2 registry?")
        challenge = parse_challenge(header)
        if self.credentials is None and challenge.scheme == "basic":
            raise ExternalError(f"{_redact_url(url)}: the registry requires credentials "
                                "(HTTP 401)", hint=self._credential_hint())
        if challenge.scheme == "basic":
            raw = f"{self.credentials.username}:{self.credentials.password}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        if challenge.scheme == "bearer":
            return "Bearer " + self._fetch_token(challenge, scope)
        raise ExternalError(f"{_redact_url(url)}: unsupported auth scheme {challenge.scheme!r}",
                            hint="gitopsctl supports Basic and Bearer token auth")

    def _fetch_token(self, challenge: Challenge, scope: str | None) -> str:
        realm = challenge.params.get("realm")
        if not realm or not re.match(r"^https?://", realm):
            raise ExternalError(f"registry Bearer challenge has no usable realm: {realm!r}")
        params = {}
        if challenge.params.get("service"):
            params["service"] = challenge.params["service"]
        wanted = scope or challenge.params.get("scope")
        if wanted:
            params["scope"] = wanted
        auth = None
        if self.credentials is not None:
            auth = (self.credentials.username, self.credentials.password)
        resp = self._send("GET", realm, {}, params=params, auth=auth)
        if resp.status_code in (401, 403):
            raise ExternalError(f"{_redact_url(realm)}: the token service refused our "
                                f"credentials (HTTP {resp.status_code})",
                                hint=self._credential_hint())
        if resp.status_code >= 400:
            raise ExternalError(f"{_redact_url(realm)}: token request failed: HTTP "
                                f"{resp.status_code} {resp.reason}")
        try:
            body = resp.json()
        except ValueError:
            raise ExternalError(f"{_redact_url(realm)}: token service did not answer JSON") from None
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise ExternalError(f"{_redact_url(realm)}: token service answered without a token")
        redact.register(token)
        return token

    def _send(self, method: str, url: str, headers: dict[str, str], **kwargs: Any):
        """One request with bounded retries on network errors and 5xx/429."""
        import requests

        last = ""
        for attempt in range(1, self.attempts + 1):
            try:
                resp = self._session_obj().request(method, url, headers=headers,
                                                   timeout=self.timeout, allow_redirects=True,
                                                   **kwargs)
            except requests.RequestException as exc:
                last = f"unreachable ({_network_reason(exc)})"
            else:
                if resp.status_code not in _RETRYABLE_STATUS:
                    return resp
                last = f"HTTP {resp.status_code} {resp.reason}"
            if attempt < self.attempts:
                self.sleep(self.backoff * 2 ** (attempt - 1))
        raise ExternalError(f"{_redact_url(url)}: {last} after {self.attempts} attempts",
                            hint="check that the registry is up and reachable from here "
                                 f"(config registry.url: {self.host})",
                            details={"url": _redact_url(url), "attempts": self.attempts})

    def _credential_hint(self) -> str:
        if self.credentials is None:
            return ("set HARBOR_USERNAME and HARBOR_PASSWORD (or the variables named by "
                    "registry.username_env / password_env), or `docker login` first")
        return (f"check the credentials from {self.credentials.source}: the robot account "
                "may be expired, disabled or lack access to the project")


def _next_link(header: str) -> str | None:
    match = re.search(r'<([^>]+)>\s*;\s*rel="?next"?', header)
    if not match:
        return None
    # Distribution sends a path; some registries send a full URL on the same host
    return re.sub(r"^https?://[^/]+", "", match.group(1))


def _redact_url(url: str) -> str:
    """Drop any user:password@ part and the query string (tokens can travel there)."""
    url = re.sub(r"^([a-z]+://)[^/@]*@", r"\1", url)
    return url.split("?", 1)[0]


def _network_reason(exc: Exception) -> str:
    text = str(exc)
    for needle in ("Connection refused", "timed out", "Name or service not known",
                   "No route to host", "Connection reset", "certificate verify failed",
                   "Remote end closed connection"):
        if needle.lower() in text.lower():
            return needle.lower()
    return type(exc).__name__
