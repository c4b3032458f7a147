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


@dataclass(frozen=True)
class HttpAnswer:
    """One GET's outcome: status and the first bytes of the body, or why there was none."""

    url: str
    status: int | None
    body: str
    error: str | None
    elapsed: float


def fetch_text(url: str, timeout: float = 5.0, limit: int = 4096) -> HttpAnswer:
    """One GET, following redirects; the body of any status is kept (an error page says why).
    Never raises for network errors: they are answers too."""
    import urllib.error
    import urllib.request

    start = time.monotonic()
    req = urllib.request.Request(url, headers={"User-Agent": "gitopsctl-health"})
    try:
        # Health URLs are local services; a proxy from the environment would lie about them.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=timeout) as resp:
            return HttpAnswer(url, resp.status, _text(resp.read(limit)), None,
                              time.monotonic() - start)
    except urllib.error.HTTPError as exc:
        try:
            body = _text(exc.read(limit))
        except OSError:
            body = ""
        return HttpAnswer(url, exc.code, body, str(exc.reason), time.monotonic() - start)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return HttpAnswer(url, None, "", f"no answer: {reason}", time.monotonic() - start)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace").strip()


def probe_http(url: str, timeout: float = 5.0) -> HttpResult:
    """One GET; ok on 2xx. Never raises for network errors: they are results."""
    answer = fetch_text(url, timeout, limit=512)
    if answer.status is None:
        return HttpResult(url, False, None, answer.error or "no answer", answer.elapsed)
    ok = 200 <= answer.status < 300
    message = f"HTTP {answer.status} {answer.body[:120] if ok else answer.error or ''}".strip()
    return HttpResult(url, ok, answer.status, message, answer.elapsed)


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
