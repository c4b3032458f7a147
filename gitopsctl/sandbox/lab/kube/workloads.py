"""kube-controller-manager's StatefulSet and DaemonSet controllers, as one tickable unit.

`WorkloadControllers(store).tick()` is what the simulator's controller-manager loop runs
next to the Deployment and ReplicaSet controllers. Until that loop runs it (simulator.py),
`run_beside(emulator)` runs it on a loop of its own against the same store, as a separate
controller process would: level-triggered, woken by any store change, so the outcome is
the same, only ordered independently of the other controllers.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from gitopsctl.sandbox.lab.kube.daemonset import DaemonSetController
from gitopsctl.sandbox.lab.kube.statefulset import StatefulSetController
from gitopsctl.sandbox.lab.kube.store import Store


class WorkloadControllers:
    def __init__(self, store: Store, errors: list[str] | None = None):
        self.store = store
        self.statefulsets = StatefulSetController(store)
        self.daemonsets = DaemonSetController(store)
        self.errors = errors if errors is not None else []
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> None:
        self.statefulsets.tick()
        self.daemonsets.tick()

    def start(self) -> "WorkloadControllers":
        self._thread = threading.Thread(target=self._loop, name="kube-sim-workloads", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _loop(self) -> None:
        seen = -1
        ticks: list[Callable[[], None]] = [self.statefulsets.tick, self.daemonsets.tick]
        while not self._halt.is_set():
            for tick in ticks:
                try:
                    tick()
                except Exception as exc:  # noqa: BLE001 - a controller bug must show, not kill the loop
                    self.errors.append(f"{tick.__qualname__}: {type(exc).__name__}: {exc}")
                    del self.errors[:-50]
            seen = self.store.wait_for_change(seen, 0.1)
            self._halt.wait(0.02)  # coalesce bursts of writes into one pass


def run_beside(emulator: Any) -> WorkloadControllers | None:
    """Start the controllers on their own loop unless the emulator's simulator already runs
    them; the caller stops what this returns (None: nothing was started)."""
    simulator = getattr(emulator, "simulator", None)
    if simulator is None or getattr(simulator, "workloads", None) is not None:
        return None
    return WorkloadControllers(emulator.store, errors=simulator.errors).start()
