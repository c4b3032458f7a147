"""A service's own health checks, run from where gitopsctl runs, as report checks.

The probes themselves (one HTTP GET, one TCP connect) are gitopsctl.health's, shared with
the VM target; this turns a configured HealthCheck into the Check a HealthReport carries,
named after its kind ("http", "tcp") so reports and rollback commits say what was probed.
A compose check is judged on the VM, never here.
"""

from __future__ import annotations

from typing import Any

from gitopsctl.health import Check, probe_check

PROBED_HERE = ("http", "tcp")


def run_check(check: Any, timeout: float) -> Check:
    """One look of an http or tcp HealthCheck."""
    if check.kind not in PROBED_HERE:
        raise ValueError(f"a {check.kind} health check is judged on its VM, not probed from here")
    ok, message = probe_check(check, timeout)
    return Check(check.kind, ok, message)
