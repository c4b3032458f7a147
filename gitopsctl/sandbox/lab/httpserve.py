"""Small HTTP services the harness runs beside the real ones (token endpoint, git over HTTP)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve_in_background(handler: type[BaseHTTPRequestHandler], name: str,
                        port: int = 0) -> ThreadingHTTPServer:
    """Listen on 127.0.0.1:`port` (0: any free port) and serve from a daemon thread."""
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
    return server


def shut_down(server: ThreadingHTTPServer | None) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()
