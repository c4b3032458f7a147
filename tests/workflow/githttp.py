"""A git smart-HTTP server on loopback that, like Gitea, wants a token in Basic auth.

`git http-backend` (git's own CGI program) serves fetches and pushes of the bare
repositories under one directory; requests without the expected
`Authorization: Basic base64(<any user>:<token>)` header get 401, as Gitea answers
a checkout or push with a missing or wrong Actions token.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from gitopsctl.sandbox.lab.httpserve import serve_in_background, shut_down

_BACKEND_TIMEOUT = 60.0


@dataclass
class GitHttpServer:
    root: Path                       # directory holding the bare repositories
    token: str = field(default_factory=lambda: secrets.token_urlsafe(16), repr=False)
    port: int = 0
    requests: list[tuple[str, str, int]] = field(default_factory=list)  # method, path, status
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)

    def url(self, bare: Path) -> str:
        return f"http://127.0.0.1:{self.port}/{bare.relative_to(self.root)}"

    def start(self) -> "GitHttpServer":
        self._server = serve_in_background(_handler(self), "git-http")
        self.port = self._server.server_address[1]
        return self

    def stop(self) -> None:
        shut_down(self._server)
        self._server = None

    def authorized(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            _, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return secrets.compare_digest(password, self.token)


def _handler(server: GitHttpServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args) -> None:  # keep test output clean
            return None

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            url = urlsplit(self.path)
            if not server.authorized(self.headers.get("Authorization", "")):
                server.requests.append((self.command, url.path, 401))
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="gitea"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                   "GIT_PROJECT_ROOT": str(server.root), "GIT_HTTP_EXPORT_ALL": "1",
                   "REQUEST_METHOD": self.command, "PATH_INFO": url.path,
                   "QUERY_STRING": url.query, "REMOTE_USER": "gitea-actions",
                   "REMOTE_ADDR": "127.0.0.1",
                   "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                   "CONTENT_LENGTH": str(len(body)),
                   "HTTP_GIT_PROTOCOL": self.headers.get("Git-Protocol", "")}
            if self.headers.get("Content-Encoding"):
                env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
            proc = subprocess.run(["git", "http-backend"], input=body, env=env,
                                  capture_output=True, timeout=_BACKEND_TIMEOUT)
            head, sep, payload = proc.stdout.partition(b"\r\n\r\n")
            if not sep:  # CGI allows bare newlines too
                head, _, payload = proc.stdout.partition(b"\n\n")
            status, headers = 200, []
            for line in head.decode("latin-1").splitlines():
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.strip().split()[0])
                elif name:
                    headers.append((name, value.strip()))
            server.requests.append((self.command, url.path, status))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler
