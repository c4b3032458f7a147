"""Pure helpers for Flux objects: revisions, reconcile-request tokens, conditions.

No I/O and no Kubernetes client here, so the rules that decide "is this revision
live" are testable on plain dicts (the shape the API returns).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

from gitopsctl.repo import is_full_sha

REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"

SOURCE_GROUP, SOURCE_VERSION, GIT_REPOSITORIES = "source.toolkit.fluxcd.io", "v1", "gitrepositories"
KUSTOMIZE_GROUP, KUSTOMIZE_VERSION, KUSTOMIZATIONS = "kustomize.toolkit.fluxcd.io", "v1", "kustomizations"

_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")


@dataclass(frozen=True)
class Revision:
    """A Flux source revision like `main@sha1:<sha>`.

    `name` is the ref part ("main", "refs/heads/main", "v1.0") or "" when the
    revision is a bare digest; `digest` is `<algorithm>:<hex>`.
    """

    name: str
    digest: str

    @property
    def algorithm(self) -> str:
        return self.digest.split(":", 1)[0]

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]

    def __str__(self) -> str:
        return f"{self.name}@{self.digest}" if self.name else self.digest


def parse_revision(text: str) -> Revision | None:
    """Parse a Flux revision; None when it is not one.

    Current format is `<ref>@<algo>:<hex>`; a ref may itself contain `@`, so the split
    is on the last one. The pre-v2.0 format `<branch>/<sha>` is accepted too because
    clusters upgraded from older Flux still show it until their next reconcile.
    """
    if not isinstance(text, str) or not text:
        return None
    name, sep, digest = text.rpartition("@")
    if sep and _DIGEST_RE.match(digest):
        return Revision(name, digest.lower())
    if _DIGEST_RE.match(text):
        return Revision("", text.lower())
    legacy_name, slash, sha = text.rpartition("/")
    if slash and is_full_sha(sha.lower()):
        return Revision(legacy_name, f"sha1:{sha.lower()}")
    return None


def git_revision(branch: str, sha: str) -> str:
    """The revision Flux reports for `sha` on `branch`: `main@sha1:<sha>`."""
    if not is_full_sha(sha.lower()):
        raise ValueError(f"not a full git commit SHA: {sha!r}")
    return f"{branch}@sha1:{sha.lower()}"


def revision_is(observed: Any, sha: str) -> bool:
    """True when the revision string `observed` points at commit `sha` (full SHA)."""
    parsed = parse_revision(observed) if isinstance(observed, str) else None
    return parsed is not None and parsed.algorithm == "sha1" and parsed.hex.lower() == sha.lower()


def request_token(now: datetime | None = None) -> str:
    """A reconcile-request token as the flux CLI writes it: RFC3339Nano in UTC.

    Go's RFC3339Nano drops trailing zeros of the fraction (and the dot when nothing
    is left); Python only has microseconds, so the last three digits are always zero
    and are trimmed with the rest.
    """
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    base = now.strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{now.microsecond:06d}".rstrip("0")
    return f"{base}.{fraction}Z" if fraction else f"{base}Z"


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True", "False" or "Unknown"
    reason: str
    message: str

    @property
    def true(self) -> bool:
        return self.status == "True"

    @property
    def false(self) -> bool:
        return self.status == "False"


def condition(obj: Mapping[str, Any], kind: str = "Ready") -> Condition | None:
    """The condition of type `kind` in obj.status.conditions, if any."""
    for cond in ((obj.get("status") or {}).get("conditions") or []):
        if isinstance(cond, Mapping) and cond.get("type") == kind:
            return Condition(kind, str(cond.get("status", "Unknown")),
                             str(cond.get("reason", "")), str(cond.get("message", "")))
    return None


def status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("status") or {}


def suspended(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("spec") or {}).get("suspend"))


def handled(obj: Mapping[str, Any], token: str) -> bool:
    """Whether the controller has picked up the reconcile request `token`."""
    return status(obj).get("lastHandledReconcileAt") == token


# Ready=False reasons that kustomize-controller retries by itself, so not a verdict on the
# revision (internal/controller/kustomization_controller.go `Reconcile`): a health check
# canceled by an event that re-queued the Kustomization (our own reconcile request
# included, with CancelHealthCheckOnNewRevision) is re-run at once; dependencies are
# re-checked every --requeue-dependency.
RETRIED_BY_FLUX = {
    "HealthCheckCanceled": "Flux re-queued it and runs the health check again",
    "DependencyNotReady": "Flux checks the dependencies again shortly",
}
# Ready=False ArtifactFailed: the source artifact or spec.path is missing.
ARTIFACT_FAILED = "ArtifactFailed"


@dataclass(frozen=True)
class Verdict:
    """What a Flux object says about one revision.

    state: "pending" (keep waiting), "applied" (done, healthy as far as Flux knows),
    "checking" (applied, Flux is running its health checks), "failed".
    """

    state: str
    reason: str = ""
    message: str = ""

    @property
    def done(self) -> bool:
        return self.state in ("applied", "failed")


def source_verdict(repo: Mapping[str, Any], token: str, sha: str) -> Verdict:
    """Judge a GitRepository after a reconcile request for commit `sha`."""
    if suspended(repo):
        return Verdict("failed", "Suspended", "GitRepository is suspended (spec.suspend: true)")
    if not handled(repo, token):
        return Verdict("pending", "Waiting", "reconcile request not handled yet")
    ready = condition(repo)
    revision = (status(repo).get("artifact") or {}).get("revision", "")
    if revision_is(revision, sha) and ready is not None and ready.true:
        return Verdict("applied", ready.reason, f"fetched revision {revision}")
    if ready is not None and ready.false:
        return Verdict("failed", ready.reason or "NotReady", ready.message)
    if revision and not revision_is(revision, sha) and ready is not None and ready.true:
        return Verdict("pending", "OtherRevision", f"source is at {revision}")
    return Verdict("pending", ready.reason if ready else "Waiting",
                   ready.message if ready else "no Ready condition yet")


def kustomization_verdict(ks: Mapping[str, Any], token: str, sha: str) -> Verdict:
    """Judge a Kustomization after a reconcile request for commit `sha`.

    Ready=True with lastAppliedRevision at `sha` is success; Ready=False with
    lastAttemptedRevision at `sha` is failure (BuildFailed, ReconciliationFailed,
    HealthCheckFailed, ...), except the reasons Flux retries by itself (HealthCheckCanceled,
    DependencyNotReady), which are pending. ArtifactFailed never moves
    lastAttemptedRevision, so it is a failure once our request `token` is handled.
    While Flux runs its health checks on our revision the verdict is "checking":
    the objects are applied, and the caller follows the rollout itself instead of
    waiting out Flux's timeout.
    """
    if suspended(ks):
        return Verdict("failed", "Suspended", "Kustomization is suspended (spec.suspend: true)")
    st = status(ks)
    ready = condition(ks)
    attempted = st.get("lastAttemptedRevision", "")
    applied = st.get("lastAppliedRevision", "")
    if ready is not None and ready.true and revision_is(applied, sha):
        if handled(ks, token) or revision_is(attempted, sha):
            return Verdict("applied", ready.reason, ready.message)
    if ready is not None and ready.false and ready.reason in RETRIED_BY_FLUX:
        return Verdict("pending", ready.reason, f"{ready.message}; {RETRIED_BY_FLUX[ready.reason]}")
    if ready is not None and ready.false and ready.reason == ARTIFACT_FAILED and token and handled(ks, token):
        # Set before lastAttemptedRevision moves, so only our handled request ties it to us.
        return Verdict("failed", ready.reason, ready.message)
    if ready is not None and ready.false and revision_is(attempted, sha):
        return Verdict("failed", ready.reason or "NotReady", ready.message)
    reconciling = condition(ks, "Reconciling")
    if revision_is(attempted, sha) and reconciling is not None and reconciling.true \
            and "health check" in reconciling.message.lower():
        return Verdict("checking", reconciling.reason, reconciling.message)
    if ready is None:
        return Verdict("pending", "Waiting", "no Ready condition yet")
    if not revision_is(attempted, sha) and attempted:
        return Verdict("pending", ready.reason, f"still on {attempted}: {ready.message}".rstrip(": "))
    return Verdict("pending", ready.reason, ready.message)


KUSTOMIZE_API_PREFIX = "kustomize.toolkit.fluxcd.io/"


def is_kustomization(doc: Any) -> bool:
    """A Flux Kustomization (any served version), not a kustomize kustomization.yaml."""
    return isinstance(doc, dict) and doc.get("kind") == "Kustomization" and \
        str(doc.get("apiVersion", "")).startswith(KUSTOMIZE_API_PREFIX)


def kustomization_path(doc: Mapping[str, Any]) -> str | None:
    """spec.path of a Flux Kustomization, repo-relative and normalized ("." for the source's
    root); None when Flux would refuse it (absolute, or outside the source)."""
    import posixpath

    spec = doc.get("spec") if isinstance(doc.get("spec"), dict) else {}
    # no spec.path: the source's root (fluxcd/kustomize-controller api/v1/kustomization_types.go)
    raw = spec.get("path") or "./"
    if not isinstance(raw, str) or raw.startswith("/"):
        return None
    relative = posixpath.normpath(raw.strip().replace("\\", "/"))
    if relative == ".." or relative.startswith("../"):
        return None  # outside the source: Flux refuses it too
    return relative
