"""The example frontend asks the backend only through the Service's environment variables.

Both images are built from the examples and run with host networking, as the lab's pods do;
the frontend is given BACKEND_SERVICE_HOST/_PORT by hand, as the kubelet would give it the
Service's cluster IP and port. Every answer is read with a plain HTTP client that follows
the redirect httpd sends for /api/version (-> /api/version/), as `curl -L` does.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager

from gitopsctl.commands.build import build
from gitopsctl.sandbox.lab.ports import free_port

READY_DEADLINE = 20.0
NO_SERVICE = "frontend: no backend Service (BACKEND_SERVICE_HOST is not set)"


def _get(url: str, timeout: float = 15.0) -> tuple[int, str]:
    """Status and body of a GET, redirects followed; an HTTP error status is an answer too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _raw_get(port: int, path: str) -> tuple[int, str]:
    """A GET of `path` exactly as written: no client normalises its dots or escapes."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def _wait_ready(port: int, container) -> None:
    deadline = time.monotonic() + READY_DEADLINE
    while time.monotonic() < deadline:
        try:
            if _get(f"http://127.0.0.1:{port}/healthz", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    container.reload()
    raise AssertionError(f"no healthy answer on port {port} within {READY_DEADLINE}s: "
                         f"{container.status}, logs: {container.logs().decode()[-500:]}")


class Apps:
    """The two example images of one build, started as the test asks and removed after it."""

    def __init__(self, docker_client, result):
        self.client, self.result, self.started = docker_client, result, []

    def run(self, service: str, **environment: str) -> int:
        port = free_port()
        container = self.client.containers.run(
            self.result.images[service].image_id, detach=True, network_mode="host",
            environment={"PORT": str(port), **environment})
        self.started.append(container)
        _wait_ready(port, container)
        return port

    def frontend_to(self, backend_port: int) -> int:
        return self.run("frontend", BACKEND_SERVICE_HOST="127.0.0.1",
                        BACKEND_SERVICE_PORT=str(backend_port))

    def remove(self) -> None:
        for container in self.started:
            container.remove(force=True)


@contextmanager
def _apps(homelab, docker_client):
    apps = Apps(docker_client, build(homelab.context(), push=False))
    try:
        yield apps
    finally:
        apps.remove()


@contextmanager
def _silent_listener():
    """A port that accepts connections and never answers: a backend that hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop, held = threading.Event(), []

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        server.close()


def test_frontend_answers_the_backends_version_through_the_service(homelab, docker_client):
    with _apps(homelab, docker_client) as apps:
        backend = apps.run("backend")
        frontend = apps.frontend_to(backend)
        source = apps.result.source
        assert _get(f"http://127.0.0.1:{frontend}/api/version") == (200, f"{source}\n")
        # the backend's own page, not the frontend's: only the backend says "ok backend"
        assert _get(f"http://127.0.0.1:{frontend}/api/healthz") == (200, f"ok backend {source}\n")
        # the directory URL answers 302 first; a client that follows it lands on the CGI
        conn = http.client.HTTPConnection("127.0.0.1", frontend, timeout=10)
        conn.request("GET", "/api/version")
        redirect = conn.getresponse()
        assert (redirect.status, redirect.getheader("Location")) == (302, "/api/version/")
        conn.close()


def test_frontend_without_the_service_answers_502_and_stays_healthy(homelab, docker_client):
    with _apps(homelab, docker_client) as apps:
        frontend = apps.run("frontend")
        assert _get(f"http://127.0.0.1:{frontend}/api/version") == (502, NO_SERVICE + "\n")
        assert _get(f"http://127.0.0.1:{frontend}/healthz")[0] == 200


def test_incompatible_backend_is_healthy_but_unusable_by_the_frontend(homelab, docker_client):
    with _apps(homelab, docker_client) as apps:
        backend = apps.run("backend", FAIL_MODE="incompatible")
        frontend = apps.frontend_to(backend)
        source = apps.result.source
        assert _get(f"http://127.0.0.1:{backend}/healthz") == (200, f"ok backend {source}\n")
        assert _get(f"http://127.0.0.1:{backend}/")[0] == 200
        assert _get(f"http://127.0.0.1:{backend}/version")[0] == 404
        assert _get(f"http://127.0.0.1:{backend}/v2/version") == (200, f"{source}\n")
        status, body = _get(f"http://127.0.0.1:{frontend}/api/version")
        assert status == 502
        assert body.startswith(f"frontend: backend http://127.0.0.1:{backend}/version failed:")
        assert "404 Not Found" in body and body.count("\n") == 1
        # the moved API is reachable, so it is the API, not the route, that broke (a path
        # the frontend has no directory for needs its trailing slash to reach the CGI)
        assert _get(f"http://127.0.0.1:{frontend}/api/v2/version/") == (200, f"{source}\n")


def test_unreachable_or_hanging_backend_is_a_502_with_the_reason(homelab, docker_client):
    with _apps(homelab, docker_client) as apps, _silent_listener() as hanging:
        closed = apps.frontend_to(free_port())
        status, body = _get(f"http://127.0.0.1:{closed}/api/version")
        assert status == 502 and "Connection refused" in body, body
        stalled = apps.frontend_to(hanging)
        started = time.monotonic()
        status, body = _get(f"http://127.0.0.1:{stalled}/api/version")
        assert status == 502 and "no answer within 5 s" in body, body
        assert time.monotonic() - started < 10


def test_hostile_paths_are_refused_and_never_forwarded(homelab, docker_client):
    with _apps(homelab, docker_client) as apps:
        backend = apps.run("backend")
        frontend = apps.frontend_to(backend)
        # httpd refuses an encoded slash itself; it resolves ".." before the CGI sees the
        # path (so /etc/ is outside /api/); the CGI refuses what is left.
        expected = {"/api/..%2f..%2fetc/": 404, "/api/version/../../etc/": 404,
                    "/api/a%20b/": 400, "/api/a;id/": 400, "/api/version/?x=1": 400,
                    "/api/$(id)/": 400, "/nothing/": 404}
        answers = {path: _raw_get(frontend, path) for path in expected}
        assert {path: status for path, (status, _) in answers.items()} == expected, answers
        for path, (_, body) in answers.items():
            assert "root:" not in body and "uid=" not in body, (path, body)
        assert "only letters, digits" in answers["/api/a;id/"][1]
        conn = http.client.HTTPConnection("127.0.0.1", frontend, timeout=10)
        conn.request("POST", "/api/version/", body=b"x=1")
        assert conn.getresponse().status == 405
        conn.close()
