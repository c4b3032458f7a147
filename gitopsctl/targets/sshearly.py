"""An SSH connection to a VM opened ahead of its use (VMTarget.preconnect).

The handshake and the key exchange take a tenth to a fifth of a second of CPU on CI's
side; stage opens the VM's connection while the frontend's group deploys, so the
backend's sync starts at once when its turn comes.
"""

from __future__ import annotations

import atexit
import threading
from contextlib import ExitStack
from typing import Any


class EarlyConnection:
    """One SSH connection opened ahead of its use by a background thread (VMTarget.preconnect).

    `take()` hands it over only if it is open and alive at that moment; otherwise the
    caller connects as usual, and a connection that opens later is closed unused.
    """

    def __init__(self, target: Any):
        self.target = target
        self._stack = ExitStack()
        self._conn: Any = None
        self._done = False
        self._taken = False
        self._handed = False
        self._lock = threading.Lock()

    def start(self) -> "EarlyConnection":
        # never used (the stage ended before the VM's turn): close it, and remove the
        # known_hosts copy it may hold, before the interpreter goes
        atexit.register(self._abandon)
        threading.Thread(target=self._open, name="gitopsctl-ssh-early", daemon=True).start()
        return self

    def _abandon(self) -> None:
        with self._lock:
            self._taken = True
            keep = self._handed
        if not keep:
            self._stack.close()

    def _open(self) -> None:
        try:
            conn = self._stack.enter_context(self.target.connection())
        except Exception:  # noqa: BLE001 - the sync's own connect reports what is wrong
            conn = None
        with self._lock:
            self._done = True
            self._conn = conn
            unwanted = self._taken
        if unwanted or conn is None:
            self._stack.close()

    def take(self) -> Any:
        """The open connection as a context manager (it closes on exit), or None."""
        with self._lock:
            self._taken = True
            ready = self._done and self._conn is not None
        if not ready:
            return None
        transport = self._conn.client.get_transport()
        if transport is None or not transport.is_active():
            self._stack.close()
            return None
        conn, stack = self._conn, self._stack
        with self._lock:
            self._handed = True

        class _Open:
            def __enter__(self):
                return conn

            def __exit__(self, *exc):
                stack.close()
                return False

        return _Open()
