"""Heavy imports done by one background thread while the caller waits on git, SSH or compose.

The kubernetes client, fabric and the docker SDK each take a quarter to a third of a
second of CPU to import. A command that is about to wait on a subprocess anyway starts
them here and, before it first uses one, waits for that group (`wait`).

Two threads importing one package at the same time can see it half-loaded ("cannot
import name … from partially initialized module"). So until `wait` returns, the caller
must not import the groups' packages, nor any package they import that the caller
imports too meanwhile: those it names as `shared`, and they are imported in the
caller's thread before the background one starts.
"""

from __future__ import annotations

import importlib
import threading
from typing import Callable, Sequence

# An import that takes longer than this is left to fail (or finish) where it is used.
WAIT_SECONDS = 30.0


class Preload:
    def __init__(self, groups: Sequence[tuple[str, Sequence[str]]],
                 then: Callable[[], None] | None = None, shared: Sequence[str] = ()):
        """`then` runs on the thread once every group is in (its errors are dropped)."""
        self.groups = [(name, tuple(modules)) for name, modules in groups]
        self.shared = tuple(shared)
        self.then = then
        self._done = {name: threading.Event() for name, _ in self.groups}
        self._thread = threading.Thread(target=self._run, name="gitopsctl-preload")
        self._lock = threading.Lock()

    def start(self) -> "Preload":
        """Start the imports; a second call does nothing."""
        with self._lock:
            if not self._thread.is_alive() and not self._thread.ident:
                for module in self.shared:
                    try:
                        importlib.import_module(module)
                    except Exception:  # noqa: BLE001 - reported where the caller imports it
                        pass
                self._thread.start()
        return self

    def wait(self, group: str) -> None:
        """Until `group`'s modules are imported (or failed to: the caller's import says
        why); at once when the imports were never started."""
        done = self._done.get(group)
        if done is not None and self._thread.ident:
            done.wait(WAIT_SECONDS)

    def _run(self) -> None:
        for name, modules in self.groups:
            try:
                for module in modules:
                    importlib.import_module(module)
            except Exception:  # noqa: BLE001 - reported by the import where the module is used
                pass
            finally:
                self._done[name].set()
        if self.then is not None:
            try:
                self.then()
            except Exception:  # noqa: BLE001 - an optional head start; the real use reports
                pass
