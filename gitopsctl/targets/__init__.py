"""Where services run. Every target speaks the same small protocol.

apply(revision)        make the target move to the pushed deploy commit `revision`
                       (Flux reconcile, or remote `gitopsctl sync --revision`)
wait_healthy(deadline) follow the rollout until healthy, failing fast on crash loops;
                       `deadline` is a time.monotonic() value; returns a HealthReport
check_health()         one look at current health without waiting (status, verify)
"""

from __future__ import annotations

from typing import Protocol

from gitopsctl.health import HealthReport


class Target(Protocol):
    name: str

    def apply(self, revision: str, deadline: float) -> None: ...

    def wait_healthy(self, revision: str, deadline: float) -> HealthReport: ...

    def check_health(self) -> HealthReport: ...
