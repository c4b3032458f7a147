"""Kubernetes API access for the frontend target: the real client, bounded retries, no secrets out.

Objects come back as wire-shape dicts (camelCase), the same shape the Flux custom
objects have, so one set of pure readers (flux.py, rollout.py) judges all of them.
Unreachable servers, 5xx, 429, 409 and slow answers are retried with exponential
backoff, a bounded number of times and never past the caller's deadline; then a
KubeApiError says what failed. Messages pass through `redact`, so a kubeconfig
token or password can never reach output.
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from gitopsctl import redact
from gitopsctl.errors import ConfigError, ExternalError

RETRYABLE_STATUS = frozenset({409, 429, 500, 502, 503, 504})


class KubeApiError(ExternalError):
    """An API call failed for good (after retries, or at once for 4xx answers)."""

    def __init__(self, message: str, *, status: int | None = None, hint: str | None = None):
        super().__init__(message, hint=hint, details={"status": status} if status else None)
        self.status = status


class WatchExpired(Exception):
    """410 Gone: the watch's resourceVersion is older than the server keeps; re-list."""


class _Retryable(Exception):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    first_delay: float = 0.2
    max_delay: float = 2.0
    connect_timeout: float = 3.0
    read_timeout: float = 10.0

    def delays(self) -> Iterator[float]:
        delay = self.first_delay
        for _ in range(self.attempts - 1):
            yield delay
            delay = min(delay * 2, self.max_delay)


def resolve_kubeconfig(path: str | None, environ: Mapping[str, str], *, target: str = "kubernetes") -> Path:
    """The kubeconfig file to use: the configured path, then $KUBECONFIG (first entry), then ~/.kube/config."""
    key = f"targets.{target}.kubeconfig"
    if path:
        chosen, origin = Path(os.path.expanduser(path)), key
    elif environ.get("KUBECONFIG"):
        chosen, origin = Path(environ["KUBECONFIG"].split(os.pathsep)[0]).expanduser(), "$KUBECONFIG"
    else:
        chosen, origin = Path("~/.kube/config").expanduser(), "the default location"
    if not chosen.is_file():
        raise ConfigError(f"kubeconfig {chosen} (from {origin}) does not exist",
                          hint=f"set {key} or $KUBECONFIG to the cluster's kubeconfig")
    return chosen


_SECRET_USER_KEYS = ("token", "password", "client-key-data")


def kubeconfig_secrets(path: Path) -> list[str]:
    """Every credential in the kubeconfig's users: tokens, passwords, client keys, auth-provider
    tokens and secrets, exec env values. Any user, not only the current context's: a
    message may name any of them. An unreadable file yields nothing (the loader says why)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        doc = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, YAMLError):
        return []
    found: list[str] = []
    users = doc.get("users") if isinstance(doc, dict) else None
    for entry in users if isinstance(users, list) else []:
        user = entry.get("user") if isinstance(entry, dict) else None
        if not isinstance(user, dict):
            continue
        found += [user[k] for k in _SECRET_USER_KEYS if isinstance(user.get(k), str)]
        if isinstance(user.get("client-key-data"), str):
            try:  # the PEM itself, line by line, should a message ever quote it
                found.append(base64.b64decode(user["client-key-data"]).decode("ascii"))
            except (ValueError, UnicodeDecodeError):
                pass
        provider = (user.get("auth-provider") or {}).get("config") if isinstance(
            user.get("auth-provider"), dict) else None
        if isinstance(provider, dict):
            found += [v for k, v in provider.items()
                      if isinstance(v, str) and ("token" in k or "secret" in k)]
        exec_env = (user.get("exec") or {}).get("env") if isinstance(user.get("exec"), dict) else None
        for item in exec_env if isinstance(exec_env, list) else []:
            if isinstance(item, dict) and isinstance(item.get("value"), str):
                found.append(item["value"])
    return found


class KubeApi:
    def __init__(self, kubeconfig: Path, context: str | None = None, policy: RetryPolicy = RetryPolicy()):
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        self.policy = policy
        cfg = client.Configuration()
        try:
            config.load_kube_config(config_file=str(kubeconfig), context=context, client_configuration=cfg,
                                    persist_config=False)
        except ConfigException as exc:
            raise ConfigError(f"kubeconfig {kubeconfig}: {exc}",
                              hint="check the file and the `context:` of the Kubernetes target in gitopsctl.yaml") from None
        # Our loop owns retries (bounded, with backoff and a deadline); urllib3's would hide them.
        cfg.retries = 0
        self._secrets = {s for s in (self._token(cfg), cfg.password) if s and len(s) >= 4}
        redact.register_all(self._secrets)
        redact.register_all(kubeconfig_secrets(kubeconfig))
        self.server = cfg.host
        # Requests go through the client's ApiClient (auth, TLS, the kubeconfig's proxy) by
        # path: the generated CoreV1Api/AppsV1Api would build a pydantic model of every type
        # they name first, about 0.6 s of CPU, for answers this module reads as plain JSON.
        self._client = client.ApiClient(cfg)

    @staticmethod
    def _token(cfg: Any) -> str | None:
        value = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
        if not value:
            return None
        return value.split(" ", 1)[1] if value.lower().startswith("bearer ") else value

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def close(self) -> None:
        self._client.close()

    # -- calls -------------------------------------------------------------------

    def call(self, what: str, method: str, path: str, *, query: Mapping[str, Any] | None = None,
             body: Any = None, content_type: str | None = None, deadline: float | None = None,
             json_body: bool = True, attempts: int | None = None) -> Any:
        """One request (`GET /api/v1/...`) with bounded retries; `what` names it in errors
        ("get Deployment default/web")."""
        started = time.monotonic()
        delays = list(self.policy.delays())[: (attempts - 1) if attempts else None]
        last: _Retryable | None = None
        for attempt in range(len(delays) + 1):
            try:
                return self._once(method, path, query, body, content_type, json_body, deadline)
            except _Retryable as exc:
                last = exc
            if attempt == len(delays):
                break
            delay = delays[attempt]
            if deadline is not None and time.monotonic() + delay >= deadline:
                break
            time.sleep(delay)
        assert last is not None
        took = time.monotonic() - started
        raise KubeApiError(
            self.redact(f"Kubernetes API {what} failed after {attempt + 1} attempts in {took:.1f}s: {last}"),
            status=last.status,
            hint=f"is the API server {self.server} reachable and healthy?")

    def _send(self, method: str, path: str, query: Mapping[str, Any] | None, body: Any,
              content_type: str | None, timeout: tuple[float, float]) -> Any:
        """The raw response (urllib3, body unread) of one request, after the client's auth."""
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        params = [(k, _query_value(v)) for k, v in (query or {}).items() if v is not None]
        request = self._client.param_serialize(method=method, resource_path=path, query_params=params,
                                               header_params=headers, body=body,
                                               auth_settings=["BearerToken"])
        return self._client.call_api(*request, _request_timeout=timeout).response

    def _once(self, method: str, path: str, query: Mapping[str, Any] | None, body: Any,
              content_type: str | None, json_body: bool, deadline: float | None) -> Any:
        import urllib3
        from kubernetes.client.exceptions import ApiException

        read = self.policy.read_timeout
        if deadline is not None:
            read = max(0.5, min(read, deadline - time.monotonic()))
        try:
            resp = self._send(method, path, query, body, content_type,
                              (self.policy.connect_timeout, read))
            data = resp.data
            status = resp.status
            reason = resp.reason
        except ApiException as exc:  # the client raises for non-2xx answers
            status, reason = int(exc.status or 0), exc.reason
            body = exc.body
            data = body.encode() if isinstance(body, str) else (body or b"")
        except urllib3.exceptions.ReadTimeoutError:
            raise _Retryable(f"no answer within {read:.1f}s") from None
        except urllib3.exceptions.ConnectTimeoutError:
            raise _Retryable(f"connect timed out after {self.policy.connect_timeout:.1f}s") from None
        except urllib3.exceptions.MaxRetryError as exc:
            if isinstance(exc.reason, urllib3.exceptions.NewConnectionError):
                # (a subclass of ConnectTimeoutError in urllib3 2, so it goes first)
                raise _Retryable(f"unreachable ({_short(exc.reason)})") from None
            if isinstance(exc.reason, urllib3.exceptions.ReadTimeoutError):
                raise _Retryable(f"no answer within {read:.1f}s") from None
            if isinstance(exc.reason, urllib3.exceptions.ConnectTimeoutError):
                raise _Retryable(f"connect timed out after {self.policy.connect_timeout:.1f}s") from None
            raise _Retryable(f"unreachable ({_short(exc.reason)})") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _Retryable(f"connection failed ({_short(exc)})") from None
        if 200 <= status < 300:
            if not json_body:
                return data.decode("utf-8", "replace")
            return json.loads(data)
        message = _status_message(data) or reason or ""
        text = f"HTTP {status} {message}".strip()
        if status in RETRYABLE_STATUS:
            raise _Retryable(text, status)
        if status in (401, 403):
            raise KubeApiError(self.redact(text), status=status,
                               hint="the kubeconfig's credentials were rejected; check user and context")
        raise KubeApiError(self.redact(text), status=status)

    # -- the calls the target makes ---------------------------------------------

    def get_custom(self, group: str, version: str, plural: str, namespace: str, name: str,
                   deadline: float | None = None) -> dict:
        return self.call(f"get {plural} {namespace}/{name}", "GET",
                         _path(f"/apis/{group}/{version}", namespace, plural, name), deadline=deadline)

    def patch_custom(self, group: str, version: str, plural: str, namespace: str, name: str, body: dict,
                     deadline: float | None = None) -> dict:
        return self.call(f"patch {plural} {namespace}/{name}", "PATCH",
                         _path(f"/apis/{group}/{version}", namespace, plural, name), body=body,
                         content_type="application/merge-patch+json", deadline=deadline)

    def get_deployment(self, namespace: str, name: str, deadline: float | None = None) -> dict:
        return self.get_workload("Deployment", namespace, name, deadline=deadline)

    def get_workload(self, kind: str, namespace: str, name: str, deadline: float | None = None) -> dict:
        """A Deployment, StatefulSet or DaemonSet (apps/v1) as a wire-shape dict."""
        plural = {"Deployment": "deployments", "StatefulSet": "statefulsets",
                  "DaemonSet": "daemonsets"}[kind]
        return self.call(f"get {kind} {namespace}/{name}", "GET",
                         _path("/apis/apps/v1", namespace, plural, name), deadline=deadline)

    def list_controller_revisions(self, namespace: str, selector: str,
                                  deadline: float | None = None) -> list[dict]:
        return self.call(f"list ControllerRevisions in {namespace}", "GET",
                         _path("/apis/apps/v1", namespace, "controllerrevisions"),
                         query={"labelSelector": selector}, deadline=deadline)["items"]

    def list_replicasets(self, namespace: str, selector: str, deadline: float | None = None) -> list[dict]:
        return self.call(f"list ReplicaSets in {namespace}", "GET",
                         _path("/apis/apps/v1", namespace, "replicasets"),
                         query={"labelSelector": selector}, deadline=deadline)["items"]

    def list_pods(self, namespace: str, selector: str, deadline: float | None = None) -> tuple[list[dict], str]:
        doc = self.call(f"list Pods in {namespace}", "GET", _path("/api/v1", namespace, "pods"),
                        query={"labelSelector": selector}, deadline=deadline)
        return doc["items"], (doc.get("metadata") or {}).get("resourceVersion", "")

    def watch_pods(self, namespace: str, selector: str, resource_version: str,
                   timeout_seconds: int) -> "WatchStream":
        """Open a watch of pods from `resource_version`; iterate it for raw events.

        The stream is read here rather than through kubernetes.watch.Watch, whose
        raw mode cannot report ERROR events (it looks for a key it never set).
        """
        from kubernetes.client.exceptions import ApiException

        resp = self._send("GET", _path("/api/v1", namespace, "pods"),
                          {"labelSelector": selector, "resourceVersion": resource_version, "watch": True,
                           "timeoutSeconds": timeout_seconds, "allowWatchBookmarks": False},
                          None, None, (self.policy.connect_timeout, timeout_seconds + 5))
        if resp.status >= 300:
            # what the generated client raised for a refused watch; the watcher re-lists on it
            data = resp.data
            resp.release_conn()
            raise ApiException(status=resp.status, reason=resp.reason,
                               body=data.decode("utf-8", "replace") if data else None)
        return WatchStream(resp, self.redact)

    def pod_log(self, namespace: str, pod: str, container: str | None, *, previous: bool,
                tail_lines: int, deadline: float | None = None) -> str:
        query: dict[str, Any] = {"tailLines": tail_lines, "previous": previous, "container": container}
        return self.call(f"read log of pod {namespace}/{pod}", "GET",
                         _path("/api/v1", namespace, "pods", pod) + "/log", query=query,
                         json_body=False, deadline=deadline, attempts=2)


def _path(prefix: str, namespace: str, plural: str, name: str | None = None) -> str:
    from urllib.parse import quote

    parts = [prefix, "namespaces", quote(namespace, safe=""), plural]
    if name is not None:
        parts.append(quote(name, safe=""))
    return "/".join(parts)


def _query_value(value: Any) -> str:
    # the API server reads booleans as "true"/"false", as the generated client sends them
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


class WatchStream:
    """Events ({"type", "object"}) of one watch request, until the server ends it.

    Iterating raises WatchExpired for 410 Gone and urllib3 errors when the stream
    drops; the caller re-lists and re-watches. close() may be called from another
    thread to end a blocked read at once.
    """

    def __init__(self, resp: Any, redact: Callable[[str], str]):
        self._resp = resp
        self._redact = redact

    def __iter__(self) -> Iterator[dict]:
        from kubernetes.watch.watch import iter_resp_lines

        try:
            for line in iter_resp_lines(self._resp):
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    if status.get("code") == 410:
                        raise WatchExpired(str(status.get("message", "resource version expired")))
                    raise KubeApiError(self._redact(f"watch failed: HTTP {status.get('code')} "
                                                    f"{status.get('message', '')}".strip()),
                                       status=status.get("code"))
                yield event
        finally:
            self.close()

    def close(self) -> None:
        shutdown = getattr(self._resp, "shutdown", None)  # urllib3 >= 2.3 unblocks a pending read
        try:
            if shutdown is not None:
                shutdown()
            self._resp.close()
            self._resp.release_conn()
        except Exception:  # noqa: BLE001 - closing a dead stream is best effort
            pass


def _status_message(data: bytes) -> str:
    try:
        doc = json.loads(data)
    except ValueError:
        return data[:200].decode("utf-8", "replace").strip()
    if isinstance(doc, dict):
        return str(doc.get("message") or doc.get("reason") or "")
    return ""


def _short(exc: Any) -> str:
    text = str(exc)
    # urllib3 wraps the useful part ("Connection refused") in object reprs; keep the tail.
    if "Errno" in text:
        text = text[text.index("[Errno"):].rstrip("'\")")
    return text[:200]
