"""The health report every target returns, and the HTTP probe they share."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Check:
    """One named check within a report: rollout, pods, containers, http, ..."""

    name: str
    ok: bool
    message: str
    evidence: list[str] = field(default_factory=list)  # last log lines, probe output, states

    def to_dict(self) -> dict:
        return {"name": self.name, "ok": self.ok, "message": self.message,
                "evidence": self.evidence}


@dataclass
class HealthReport:
    """The outcome of waiting for one target to become healthy.

    `reason` is a short phrase for commit subjects ("frontend CrashLoopBackOff");
    `checks` carry the detail and evidence that go into a rollback commit body.
    """

    target: str
    healthy: bool
    reason: str = ""
    checks: list[Check] = field(default_factory=list)
    revision: str | None = None
    started: float = field(default_factory=time.time)
    elapsed: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def failed_check(self) -> Check | None:
        return next((c for c in self.checks if not c.ok), None)

    def to_dict(self) -> dict:
        return {"target": self.target, "healthy": self.healthy, "reason": self.reason,
                "revision": self.revision, "elapsed_seconds": round(self.elapsed, 3),
                "checks": [c.to_dict() for c in self.checks], "details": self.details}


@dataclass(frozen=True)
class HttpResult:
    url: str
    ok: bool
    status: int | None
    message: str
    elapsed: float


def probe_http(url: str, timeout: float = 5.0) -> HttpResult:
    """One GET; ok on 2xx. Never raises for network errors: they are results."""
    import urllib.error
    import urllib.request

    start = time.monotonic()
    req = urllib.request.Request(url, headers={"User-Agent": "gitopsctl-health"})
    try:
        # Health URLs are local services; a proxy from the environment would lie about them.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=timeout) as resp:
            status = resp.status
            body = resp.read(512).decode("utf-8", "replace").strip()
        ok = 200 <= status < 300
        return HttpResult(url, ok, status, f"HTTP {status} {body[:120]}".strip(),
                          time.monotonic() - start)
    except urllib.error.HTTPError as exc:
        return HttpResult(url, False, exc.code, f"HTTP {exc.code} {exc.reason}",
                          time.monotonic() - start)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return HttpResult(url, False, None, f"no answer: {reason}", time.monotonic() - start)


@dataclass(frozen=True)
class TcpResult:
    address: str
    ok: bool
    message: str
    elapsed: float


def probe_tcp(address: str, timeout: float = 5.0) -> TcpResult:
    """One TCP connect to `host:port` (the config validated its shape); ok when accepted."""
    import socket

    start = time.monotonic()
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        return TcpResult(address, False, f"no connection: {exc}", time.monotonic() - start)
    return TcpResult(address, True, "connection accepted", time.monotonic() - start)


def probe_check(check: Any, timeout: float) -> tuple[bool, str]:
    """Run one http or tcp HealthCheck from here: (ok, message naming what was probed)."""
    if check.kind == "http":
        result = probe_http(check.url, timeout)
        return result.ok, f"{check.url}: {result.message}"
    if check.kind == "tcp":
        tcp = probe_tcp(check.address, timeout)
        return tcp.ok, f"tcp {check.address}: {tcp.message}"
    raise ValueError(f"a {check.kind} check cannot be probed from here")  # a caller's bug
