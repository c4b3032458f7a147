"""Where services run. The deploy engine reaches every target through these two protocols.

A Target follows one service where it runs:

apply(revision, deadline)        make the service's target move to the pushed commit
                                 `revision` (Flux reconcile, or remote `gitopsctl sync
                                 --revision`); it converges every service on that target
wait_healthy(revision, deadline) follow the rollout until healthy, failing fast on crash
                                 loops; returns a HealthReport
check_health()                   one look at current health without waiting (status, the
                                 stage's "still healthy")
observe(deadline, mismatch)      read-only watch until healthy or the deadline (verify);
                                 `mismatch(revision)` says why a revision the target runs is
                                 not what git says is live, None when it is

`deadline` is always a time.monotonic() value.

A TargetSet hands the engine the Target of each service and says which services share a
target (by the target's name in gitopsctl.yaml): the engine applies each target once per
revision and waits on each service. Production builds it from the config
(targets/factory.py); unit tests pass in-memory ones.

The engine waits for the services of one stage group at the same time, one thread each.
Once one of them fails with its own evidence the others' verdicts are no longer needed:
a target's wait (and apply) loop asks `stop_requested()` and returns early when it is
set. The request travels with the waiting thread rather than as a parameter so that
the protocol's signatures, and every Target written against them, stay as they are.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Protocol

from gitopsctl.health import HealthReport

Mismatch = Callable[[str], Optional[str]]

_scope = threading.local()


@contextmanager
def stoppable(stop: threading.Event) -> Iterator[None]:
    """Waits run in this thread under `stop`: set, they may give up at once."""
    _scope.stop = stop
    try:
        yield
    finally:
        _scope.stop = None


def stop_requested() -> bool:
    """Whether the engine no longer needs the verdict this thread is waiting for."""
    stop = getattr(_scope, "stop", None)
    return stop is not None and stop.is_set()


class Target(Protocol):
    name: str

    def apply(self, revision: str, deadline: float) -> None: ...

    def wait_healthy(self, revision: str, deadline: float) -> HealthReport: ...

    def check_health(self) -> HealthReport: ...

    def observe(self, deadline: float, mismatch: Mismatch | None = None) -> HealthReport: ...


class TargetSet(Protocol):
    def target_name(self, service: str) -> str:
        """The name of the target `service` runs on; services sharing it are applied once."""
        ...

    def for_service(self, service: str) -> Target:
        """The Target following `service`; raises GitopsctlError when it cannot be built."""
        ...

    def prepare(self, connect: bool = True) -> None:
        """Start loading what the targets need ahead of use and return at once: the
        engine calls it first thing, then does its git work meanwhile. `connect`: open
        the connections a deploy will use too (not for a read-only look)."""
        ...
