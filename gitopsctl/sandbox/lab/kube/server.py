"""The Kubernetes REST API over real HTTP(S), enough of it for the real client and kubectl.

Discovery lists exactly gitopsctl.kubeapis' table (Flux 2.9, Kubernetes 1.33, sealed-secrets);
a path naming a group, version or resource outside it answers a plain 404 "404 page not found",
as kube-apiserver does (clients print "the server could not find the requested resource"). Writes pass admission.py (strict
decoding per `fieldValidation`, then schema validation: 400 or 422 with causes).
Stored paths (namespaced, plus the all-namespaces lists):
  /api/v1/namespaces/NS/pods[/NAME[/status|/log]]
  /apis/apps/v1/namespaces/NS/{deployments,replicasets,statefulsets,daemonsets,controllerrevisions}[/NAME[/status]]
  /api/v1/namespaces/NS/services[/NAME[/status]] (serviceregistry.py allocates on write)
  /apis/discovery.k8s.io/v1/namespaces/NS/endpointslices[/NAME]
  /apis/source.toolkit.fluxcd.io/v1/namespaces/NS/gitrepositories[/NAME[/status]]
  /apis/kustomize.toolkit.fluxcd.io/v1/namespaces/NS/kustomizations[/NAME[/status]]
  /version, and discovery: /api, /api/v1, /apis, /apis/GROUP[/VERSION]
Other served kinds are not stored: they list empty, get 404 and refuse writes with 405.
Lists asked for as a meta.k8s.io Table (what `kubectl get` does) get the columns of
discovery.py.
Verbs: get, list (labelSelector, fieldSelector), watch (resourceVersion, timeoutSeconds,
410 Gone as an ERROR event), create, replace, merge-patch (strategic merge is treated as
merge for these kinds), delete, pod log (container, previous, tailLines).

Faults for tests live on `ApiServer.faults` and the methods `refuse_connections`,
`accept_connections` and `drop_watches`.
"""

from __future__ import annotations

import json
import socket
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from gitopsctl import kubeapis
from gitopsctl.sandbox.lab.kube import discovery, openapi
from gitopsctl.sandbox.lab.kube.admission import admit, field_validation
from gitopsctl.sandbox.lab.kube.kubeconfig import kubeconfig_document, write_kubeconfig
from gitopsctl.sandbox.lab.kube.selectors import Selector, SelectorError
from gitopsctl.sandbox.lab.kube.store import PODS, Kind, Store, StoreError, kind_for, merge_patch
from gitopsctl.sandbox.lab.kube.tls import make_server_certificate

LogProvider = Callable[[str, str, "str | None", bool], "str | None"]

_MERGE_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")


@dataclass
class Faults:
    """Switches tests flip to make the API misbehave. Plain attributes; reads are racy by design."""

    unavailable: bool = False  # every request answers 503
    latency: float = 0.0  # seconds of delay before every answer
    patch_conflicts: int = 0  # the next N PATCH requests answer 409 Conflict
    watch_max_seconds: float | None = None  # every watch stream is cut after this long
    expire_watches: int = 0  # the next N watches from a resourceVersion get 410 Gone
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take_conflict(self) -> bool:
        return self._take("patch_conflicts")

    def take_expiry(self) -> bool:
        return self._take("expire_watches")

    def _take(self, name: str) -> bool:
        with self._lock:
            if getattr(self, name) > 0:
                setattr(self, name, getattr(self, name) - 1)
                return True
            return False


@dataclass
class Stats:
    requests: int = 0
    watches_started: int = 0
    watches_dropped: int = 0
    patches: int = 0


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        # A client that hangs up mid-handshake or mid-stream (a dropped watch, a killed
        # gitopsctl) is routine here; only unexpected errors deserve a traceback.
        import ssl
        import sys

        if isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class ApiServer:
    """Serves `store` on 127.0.0.1:`port` (0 = pick one) until stop()."""

    def __init__(self, store: Store, *, token: str, tls: bool = True, port: int = 0,
                 log_provider: LogProvider | None = None, host: str = "127.0.0.1"):
        self.store = store
        self.token = token
        self.host = host
        self.faults = Faults()
        self.stats = Stats()
        self.log_provider = log_provider
        self._cert = make_server_certificate(host) if tls else None
        self._ssl = self._ssl_context() if tls else None
        self._port = port
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._drop_epoch = 0

    # -- lifecycle ---------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"{'https' if self._ssl else 'http'}://{self.host}:{self._port}"

    @property
    def ca_pem(self) -> bytes | None:
        return self._cert.ca_pem if self._cert else None

    def start(self) -> "ApiServer":
        server = _HTTPServer((self.host, self._port), self._handler_class())
        if self._ssl is not None:
            # Handshake in the handler thread, so one slow client never blocks accept().
            server.socket = self._ssl.wrap_socket(server.socket, server_side=True,
                                                  do_handshake_on_connect=False)
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"kube-api-{self._port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.refuse_connections()

    @property
    def listening(self) -> bool:
        return self._server is not None

    def refuse_connections(self) -> None:
        """Stop listening and cut every open connection: the API is unreachable."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        self._close_all_connections()

    def accept_connections(self) -> None:
        """Listen again on the same port after refuse_connections()."""
        if self._server is None:
            self.start()

    def drop_watches(self) -> None:
        """Cut every open watch stream mid-way (no terminating chunk), like a proxy reset."""
        self._drop_epoch += 1

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        return write_kubeconfig(path, kubeconfig_document(self.url, self.token, self.ca_pem,
                                                          namespace=namespace))

    def _ssl_context(self) -> ssl.SSLContext:
        assert self._cert is not None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory(prefix="kube-tls-") as tmp:
            cert, key = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
            cert.write_bytes(self._cert.cert_pem)
            key.write_bytes(self._cert.key_pem)
            key.chmod(0o600)
            ctx.load_cert_chain(cert, key)
        return ctx

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._conns_lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def _close_all_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _handler_class(self) -> type:
        api = self

        class Handler(_Handler):
            server_api = api

        return Handler


class _Abort(Exception):
    """The connection was cut on purpose (fault injection)."""


class _Unmatched(StoreError):
    """A path no served group, version or resource matches."""


def _not_served() -> StoreError:
    # kube-apiserver hands a path nothing is installed for to its NotFoundHandler, which ends
    # in Go's http.NotFound: a plain-text "404 page not found" (kubernetes/apiserver
    # pkg/util/notfoundhandler/not_found_handler.go). client-go turns a 404 without a Status
    # into NotFound "the server could not find the requested resource", which kubectl prints.
    return _Unmatched(404, "NotFound", "the server could not find the requested resource")


def _dry_run(query: dict) -> bool:
    return query.get("dryRun") == "All"


def _without_directives(patch: Any) -> Any:
    """A strategic merge patch less its directives ($setElementOrder/..., $retainKeys, $patch,
    $deleteFromPrimitiveList/...; k8s.io/apimachinery pkg/util/strategicpatch), which only
    order or trim what a merge patch already replaces."""
    if isinstance(patch, dict):
        return {k: _without_directives(v) for k, v in patch.items() if not k.startswith("$")}
    if isinstance(patch, list):
        return [_without_directives(v) for v in patch]
    return patch


def _prune_patch(patch: Any, patched: Any, admitted: Any) -> Any:
    """`patch` without the fields admission dropped from the object it makes."""
    if not isinstance(patch, dict) or not isinstance(patched, dict) or not isinstance(admitted, dict):
        return patch
    kept = {}
    for key, value in patch.items():
        if key in patched and key not in admitted:
            continue
        kept[key] = _prune_patch(value, patched.get(key), admitted.get(key))
    return kept


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_api: ApiServer

    def setup(self) -> None:
        super().setup()
        self.server_api._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server_api._track(self.connection, False)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet by design
        pass

    # -- plumbing ----------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        api = self.server_api
        api.stats.requests += 1
        try:
            body = self._read_body()
            if self.headers.get("Authorization", "") != f"Bearer {api.token}":
                raise StoreError(401, "Unauthorized", "Unauthorized")
            if api.faults.latency:
                time.sleep(api.faults.latency)
            if api.faults.unavailable:
                raise StoreError(503, "ServiceUnavailable", "the server is currently unable to handle the request")
            self._route(method, body)
        except _Unmatched:
            self._send_text(404, "404 page not found\n")
        except StoreError as exc:
            self._send_status(exc.code, exc.reason, exc.message, getattr(exc, "details", None))
        except SelectorError as exc:
            self._send_status(400, "BadRequest", str(exc))
        except (_Abort, BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send_json(self, code: int, doc: dict, warnings: list[str] | None = None) -> None:
        data = json.dumps(doc).encode()
        self.send_response(code)
        for warning in warnings or []:
            # RFC 7234 warn-code 299 with "-" as agent, as k8s.io/apiserver pkg/warning writes it.
            self.send_header("Warning", "299 - " + json.dumps(warning))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_text(self, code: int, text: str) -> None:
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_status(self, code: int, reason: str, message: str, details: dict | None = None) -> None:
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": message, "reason": reason, "code": code}
        if details is not None:
            status["details"] = details
        self._send_json(code, status)

    # -- routing -----------------------------------------------------------------

    def _route(self, method: str, body: bytes) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        parts = [p for p in url.path.split("/") if p]
        if parts == ["version"]:
            minor = kubeapis.KUBERNETES_RELEASE.split(".")[1]
            return self._send_json(200, {"major": "1", "minor": minor,
                                         "gitVersion": f"v{kubeapis.KUBERNETES_RELEASE}.0-gitopsctl-emulator",
                                         "platform": "linux/amd64"})
        if method == "GET" and self._discovery(parts):
            return None
        if method == "GET" and parts[:2] == ["openapi", "v3"]:
            doc = openapi.discovery_map() if len(parts) == 2 else openapi.group_version_document("/".join(parts[2:]))
            if doc is None:
                raise _not_served()
            return self._send_json(200, doc)
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise _not_served()
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        resource = kubeapis.lookup_plural(group, version, rest[0]) if rest else None
        if resource is None or (namespace is not None and not resource.namespaced):
            raise _not_served()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if len(rest) > 3 or (sub is not None and sub not in dict(resource.subresources)):
            raise _not_served()
        kind = kind_for(group, version, resource.plural)
        if kind is None:
            return self._unstored(method, resource, name, query, body)
        if name is None:
            return self._collection(method, resource, kind, namespace, query, body)
        if namespace is None:
            raise StoreError(404, "NotFound", "namespaced resources need a namespace")
        if sub == "log" and kind == PODS and method == "GET":
            return self._pod_log(namespace, name, query)
        if sub not in (None, "status"):
            raise StoreError(405, "MethodNotAllowed", f"the emulator does not serve {resource.plural}/{sub}")
        return self._item(method, resource, kind, namespace, name, sub == "status", body, query)

    def _unstored(self, method: str, resource: kubeapis.Resource, name: str | None, query: dict,
                  body: bytes) -> None:
        """A kind the cluster serves but the emulator keeps no objects of: reads see none,
        writes are checked as a real server checks them, then refused."""
        if method in ("POST", "PUT"):
            admit(resource, self._json(body), field_validation(query))
        if method != "GET":
            raise StoreError(405, "MethodNotAllowed", f"the emulator serves {resource.plural} in discovery "
                                                      "but does not store them")
        # The CRDs are there on a cluster with Flux installed, and kubectl looks for them.
        items = discovery.installed_crds() if resource.kind == "CustomResourceDefinition" else []
        if name is not None:
            found = [item for item in items if item["metadata"]["name"] == name]
            if found:
                return self._send_json(200, found[0])
            group = f".{resource.group}" if resource.group else ""
            raise StoreError(404, "NotFound", f'{resource.plural}{group} "{name}" not found')
        kind = Kind(resource.group, resource.version, resource.plural, resource.kind)
        rv = self.server_api.store.resource_version
        if query.get("watch") in ("true", "1"):
            return self._end_empty_watch()
        if self._wants_table():
            return self._send_json(200, discovery.table(kind, items, rv, query.get("includeObject")))
        return self._send_json(200, {"apiVersion": resource.api_version, "kind": f"{resource.kind}List",
                                     "metadata": {"resourceVersion": str(rv)}, "items": items})

    def _end_empty_watch(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _wants_table(self) -> bool:
        return discovery.wants_table(self.headers.get("Accept") or "")

    def _discovery(self, parts: list[str]) -> bool:
        """Answer a discovery request; False when `parts` is not one."""
        if parts == ["api"]:
            doc = discovery.api_versions(f"{self.server_api.host}:{self.server_api.port}")
        elif parts == ["api", "v1"]:
            doc = discovery.api_resource_list("", "v1")
        elif parts == ["apis"]:
            doc = discovery.api_group_list()
        elif len(parts) == 2 and parts[0] == "apis":
            doc = discovery.api_group(parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            doc = discovery.api_resource_list(parts[1], parts[2])
        else:
            return False
        if doc is None:
            raise _not_served()
        self._send_json(200, doc)
        return True

    def _collection(self, method: str, resource: kubeapis.Resource, kind: Kind, namespace: str | None,
                    query: dict, body: bytes) -> None:
        store = self.server_api.store
        if method == "POST":
            if namespace is None:
                raise StoreError(405, "MethodNotAllowed", "create needs a namespace")
            obj = self._json(body)
            if not isinstance(obj.get("metadata"), dict):
                obj["metadata"] = {}
            obj["metadata"]["namespace"] = namespace
            obj, warnings = admit(resource, obj, field_validation(query))
            if _dry_run(query):
                return self._send_json(201, obj, warnings)
            return self._send_json(201, store.create(kind, obj), warnings)
        if method != "GET":
            raise StoreError(405, "MethodNotAllowed", f"{method} is not supported on a collection")
        selector = Selector.parse(query.get("labelSelector"), query.get("fieldSelector"))
        if query.get("watch") in ("true", "1"):
            return self._watch(kind, namespace, selector, query)
        items, rv = store.list(kind, namespace, selector)
        if self._wants_table():
            return self._send_json(200, discovery.table(kind, items, rv, query.get("includeObject")))
        return self._send_json(200, {"apiVersion": kind.api_version, "kind": f"{kind.kind}List",
                                     "metadata": {"resourceVersion": str(rv)}, "items": items})

    def _item(self, method: str, resource: kubeapis.Resource, kind: Kind, namespace: str, name: str,
              status: bool, body: bytes, query: dict) -> None:
        api = self.server_api
        store = api.store
        if method == "GET":
            obj = store.get(kind, namespace, name)
            if self._wants_table():
                rv = obj["metadata"].get("resourceVersion", "")
                return self._send_json(200, discovery.table(kind, [obj], rv, query.get("includeObject")))
            return self._send_json(200, obj)
        if method == "PATCH":
            api.stats.patches += 1
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if content_type not in _MERGE_TYPES:
                raise StoreError(415, "UnsupportedMediaType",
                                 f"the emulator supports merge patches only, not {content_type or 'no content type'}")
            if api.faults.take_conflict():
                raise StoreError(409, "Conflict", f'Operation cannot be fulfilled on {kind.plural} "{name}": '
                                 "the object has been modified; please apply your changes to the latest version")
            patch, warnings = self._json(body), []
            if content_type == "application/strategic-merge-patch+json":
                patch = _without_directives(patch)
            if not status:
                patch, warnings = self._admit_patch(resource, kind, namespace, name, patch, query)
            if _dry_run(query):
                return self._send_json(200, merge_patch(store.get(kind, namespace, name), patch), warnings)
            return self._send_json(200, store.patch(kind, namespace, name, patch, status_only=status), warnings)
        if method == "PUT":
            obj = self._json(body)
            expect = (obj.get("metadata") or {}).get("resourceVersion") if isinstance(obj.get("metadata"), dict) \
                else None
            warnings = []
            if status:
                current = store.get(kind, namespace, name)
                current["status"] = obj.get("status")
                obj = current
            else:
                obj, warnings = admit(resource, obj, field_validation(query), old=store.get(kind, namespace, name))
            if _dry_run(query):
                return self._send_json(200, obj, warnings)
            return self._send_json(200, store.replace(kind, namespace, name, obj, expect_rv=expect), warnings)
        if method == "DELETE":
            return self._send_json(200, store.delete(kind, namespace, name))
        raise StoreError(405, "MethodNotAllowed", f"{method} is not supported")

    def _admit_patch(self, resource: kubeapis.Resource, kind: Kind, namespace: str, name: str, patch: dict,
                     query: dict) -> tuple[dict, list[str]]:
        """Check the object the patch would make; the patch to apply, less any dropped field."""
        old = self.server_api.store.get(kind, namespace, name)
        patched = merge_patch(old, patch)
        admitted, warnings = admit(resource, patched, field_validation(query), old=old)
        if admitted is patched:
            return patch, warnings
        return _prune_patch(patch, patched, admitted), warnings

    def _pod_log(self, namespace: str, name: str, query: dict) -> None:
        api = self.server_api
        api.store.get(PODS, namespace, name)  # 404 for unknown pods
        previous = query.get("previous") in ("true", "1")
        text = api.log_provider(namespace, name, query.get("container"), previous) if api.log_provider else None
        if text is None:
            what = "previous terminated container" if previous else "container"
            raise StoreError(400, "BadRequest", f'{what} in pod "{name}" has no logs (not started yet?)')
        tail = query.get("tailLines")
        if tail and tail.isdigit():
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(tail):]) if int(tail) else ""
        data = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    @staticmethod
    def _json(body: bytes) -> dict:
        try:
            doc = json.loads(body or b"{}")
        except ValueError as exc:
            raise StoreError(400, "BadRequest", f"request body is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise StoreError(400, "BadRequest", "request body must be a JSON object")
        return doc

    # -- watch -------------------------------------------------------------------

    def _watch(self, kind: Kind, namespace: str | None, selector: Selector, query: dict) -> None:
        api = self.server_api
        store = api.store
        api.stats.watches_started += 1
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds", "").isdigit() else 1800.0
        if api.faults.watch_max_seconds is not None:
            timeout = min(timeout, api.faults.watch_max_seconds)
        cut_at_end = api.faults.watch_max_seconds is not None
        ends = time.monotonic() + timeout
        epoch = api._drop_epoch
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        as_table = self._wants_table()
        columns_sent = False

        def send(event_type: str, obj: dict) -> None:
            nonlocal columns_sent
            if as_table:
                rv = (obj.get("metadata") or {}).get("resourceVersion", "")
                obj = discovery.table(kind, [obj], rv, query.get("includeObject"), with_columns=not columns_sent)
                columns_sent = True
            self._chunk({"type": event_type, "object": obj})

        requested = query.get("resourceVersion") or "0"
        if requested == "0":
            # "Any version": start with the current state as ADDED events.
            items, cursor = store.list(kind, namespace, selector)
            for obj in items:
                send("ADDED", obj)
            if query.get("sendInitialEvents") == "true":
                # A watch list (client-go's WatchListClient, what kubectl 1.3x's informers send)
                # waits for the bookmark that ends the initial events (KEP-3157;
                # k8s.io/apiserver pkg/storage/cacher: annotation k8s.io/initial-events-end).
                self._chunk({"type": "BOOKMARK", "object": {
                    "apiVersion": kind.api_version, "kind": kind.kind,
                    "metadata": {"resourceVersion": str(cursor),
                                 "annotations": {"k8s.io/initial-events-end": "true"}}}})
        else:
            cursor = int(requested) if requested.isdigit() else 0
            if api.faults.take_expiry():
                cursor = -1  # older than any history: the store answers 410 below
        while True:
            if api._drop_epoch != epoch or not api.listening:
                api.stats.watches_dropped += 1
                raise _Abort()
            try:
                events, cursor = store.events_after(cursor, kind, namespace, selector)
            except StoreError as exc:
                self._chunk({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                                         "status": "Failure", "message": exc.message,
                                                         "reason": exc.reason, "code": exc.code}})
                break
            for event in events:
                send(event.type, event.obj)
            left = ends - time.monotonic()
            if left <= 0:
                if cut_at_end:
                    api.stats.watches_dropped += 1
                    raise _Abort()
                break
            store.wait_for_change(cursor, min(left, 0.1))
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _chunk(self, doc: dict) -> None:
        data = json.dumps(doc).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()
