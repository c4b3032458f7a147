"""What Flux's controllers share in the simulator: Go durations, status conditions as
fluxcd/pkg runtime/conditions writes them, and read-only git on the test's remote."""

from __future__ import annotations

import re
import subprocess
from typing import Any

from gitopsctl.sandbox.lab.kube.controllers import set_condition

REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_SCALE = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def go_duration(text: Any, default: float) -> float:
    """Seconds in a Go duration like `1m30s`, `5m`, `500ms`."""
    if not isinstance(text, str) or not text:
        return default
    parts = _DURATION.findall(text)
    if not parts or "".join(a + b for a, b in parts) != text:
        return default
    return sum(float(n) * _SCALE[u] for n, u in parts)


def format_duration(seconds: float) -> str:
    """As Go's time.Duration.String prints it: `30s`, `4m30s`, `5m0s`, `1h0m0s`, `2.5s`."""
    if seconds < 60:
        text = f"{seconds:.9f}".rstrip("0").rstrip(".")
        return f"{text or '0'}s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    tail = f"{int(minutes)}m{format_duration(secs)}"
    return f"{int(hours)}h{tail}" if hours else tail


def git(*args: str, stdout_bytes: bool = False) -> Any:
    proc = subprocess.run(["git", *args], capture_output=True, check=False, stdin=subprocess.DEVNULL,
                          env={"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin"})
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode("utf-8", "replace").strip() or f"git {args[0]} failed")
    return proc.stdout if stdout_bytes else proc.stdout.decode().strip()


def local_repo(url: str) -> str:
    if url.startswith("file://"):
        return url[len("file://"):]
    if "://" in url or url.startswith("git@"):
        raise RuntimeError(f"the simulator only reads local repositories, not {url}")
    return url


def set_ready(status: dict, ok: str, reason: str, message: str, generation: int) -> None:
    set_condition(status.setdefault("conditions", []), "Ready", ok, reason, message,
                  observedGeneration=generation)


def drop_condition(status: dict, type_: str) -> None:
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != type_]


def condition(status: dict, type_: str) -> dict | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), None)


def retry_reconciling(status: dict) -> None:
    """A failed reconcile keeps Reconciling, with reason ProgressingWithRetry (kustomize-controller
    `finalizeStatus`; source-controller internal/reconcile/reconcile.go `ComputeReconcileResult`)."""
    ready, reconciling = condition(status, "Ready"), condition(status, "Reconciling")
    if ready is not None and ready.get("status") == "False" and reconciling is not None:
        reconciling["reason"] = "ProgressingWithRetry"
