"""The emulator's object store: what etcd plus the API server's bookkeeping do.

Objects are plain dicts in the wire shape (camelCase). Every write bumps one global
resourceVersion and appends a watch event to a bounded history; a watch that asks
for a version older than the history answers 410 Gone, as a real API server does
once its watch cache has moved on.
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from gitopsctl.sandbox.lab.kube.selectors import Selector


@dataclass(frozen=True)
class Kind:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


DEPLOYMENTS = Kind("apps", "v1", "deployments", "Deployment")
REPLICASETS = Kind("apps", "v1", "replicasets", "ReplicaSet")
STATEFULSETS = Kind("apps", "v1", "statefulsets", "StatefulSet")
DAEMONSETS = Kind("apps", "v1", "daemonsets", "DaemonSet")
CONTROLLER_REVISIONS = Kind("apps", "v1", "controllerrevisions", "ControllerRevision")
PODS = Kind("", "v1", "pods", "Pod")
GIT_REPOSITORIES = Kind("source.toolkit.fluxcd.io", "v1", "gitrepositories", "GitRepository")
KUSTOMIZATIONS = Kind("kustomize.toolkit.fluxcd.io", "v1", "kustomizations", "Kustomization")
SERVICES = Kind("", "v1", "services", "Service")
ENDPOINT_SLICES = Kind("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")
KINDS = (DEPLOYMENTS, REPLICASETS, STATEFULSETS, DAEMONSETS, CONTROLLER_REVISIONS, PODS, GIT_REPOSITORIES,
         KUSTOMIZATIONS, SERVICES, ENDPOINT_SLICES)

# What the API server's REST strategy does to a write of one kind before it is stored (defaults
# that need cluster state, allocations, checks against the old object): prepare(new, old) with
# old None on create; it may raise a StoreError. Called under the store's (re-entrant) lock.
WriteHook = Callable[[dict, "dict | None"], None]


def _default_statefulset(spec: dict) -> None:
    # kubernetes/kubernetes pkg/apis/apps/v1/defaults.go SetDefaults_StatefulSet: clients (kubectl
    # rollout status among them) read these fields as the server fills them in.
    spec.setdefault("podManagementPolicy", "OrderedReady")
    strategy = spec.setdefault("updateStrategy", {})
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
        strategy.setdefault("rollingUpdate", {})
    if strategy["type"] == "RollingUpdate" and isinstance(strategy.get("rollingUpdate"), dict):
        strategy["rollingUpdate"].setdefault("partition", 0)
    spec.setdefault("persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)


def _default_daemonset(spec: dict) -> None:
    # The same file's SetDefaults_DaemonSet.
    strategy = spec.setdefault("updateStrategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", 1)
        rolling.setdefault("maxSurge", 0)
    spec.setdefault("revisionHistoryLimit", 10)


_DEFAULTS = {STATEFULSETS: _default_statefulset, DAEMONSETS: _default_daemonset}


def apply_defaults(kind: Kind, obj: dict) -> None:
    """API defaulting of a written object's spec, as the server does before it stores one."""
    default = _DEFAULTS.get(kind)
    if default is not None and isinstance(obj.get("spec"), dict):
        default(obj["spec"])


def kind_for(group: str, version: str, plural: str) -> Kind | None:
    return next((k for k in KINDS if (k.group, k.version, k.plural) == (group, version, plural)), None)


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class StoreError(Exception):
    """An API-level failure with the HTTP status and reason the server answers."""

    def __init__(self, code: int, reason: str, message: str):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Event:
    rv: int
    kind: Kind
    type: str  # ADDED, MODIFIED, DELETED
    obj: dict


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: null deletes, objects merge, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class Store:
    def __init__(self, history: int = 1000):
        self._changed = threading.Condition()
        self._rv = 0
        self._objects: dict[tuple[Kind, str, str], dict] = {}
        self._history: deque[Event] = deque(maxlen=history)
        self._compacted = 0  # every event with rv <= this one is gone from history
        self.write_hooks: dict[Kind, WriteHook] = {}

    # -- reading ---------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        with self._changed:
            return self._rv

    def get(self, kind: Kind, namespace: str, name: str) -> dict:
        with self._changed:
            obj = self._objects.get((kind, namespace, name))
            if obj is None:
                raise StoreError(404, "NotFound", f'{kind.plural}.{kind.group or "core"} "{name}" not found')
            return copy.deepcopy(obj)

    def find(self, kind: Kind, namespace: str, name: str) -> dict | None:
        try:
            return self.get(kind, namespace, name)
        except StoreError:
            return None

    def list(self, kind: Kind, namespace: str | None = None,
             selector: Selector | None = None) -> tuple[list[dict], int]:
        with self._changed:
            items = [copy.deepcopy(o) for (k, ns, _), o in sorted(self._objects.items(), key=lambda i: i[0][1:])
                     if k == kind and (namespace is None or ns == namespace)
                     and (selector is None or selector.matches(o))]
            return items, self._rv

    def events_after(self, rv: int, kind: Kind, namespace: str | None,
                     selector: Selector | None) -> tuple[list[Event], int]:
        """Events newer than `rv` for this kind, and the store's rv they are complete up to.

        Raises 410 when `rv` fell out of history.
        """
        with self._changed:
            if rv < self._compacted or rv < 0:
                raise StoreError(410, "Expired", f"too old resource version: {rv} ({self._compacted + 1})")
            events = [e for e in self._history if e.rv > rv and e.kind == kind
                      and (namespace is None or e.obj["metadata"].get("namespace") == namespace)
                      and (selector is None or selector.matches(e.obj))]
            return events, self._rv

    def wait_for_change(self, after_rv: int, timeout: float) -> int:
        """Block until the store moves past `after_rv` or `timeout` passes; the new rv."""
        with self._changed:
            self._changed.wait_for(lambda: self._rv > after_rv, timeout=timeout)
            return self._rv

    # -- writing ---------------------------------------------------------------

    def create(self, kind: Kind, obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        name, ns = meta.get("name"), meta.get("namespace") or "default"
        if not name:
            raise StoreError(422, "Invalid", "metadata.name: Required value")
        with self._changed:
            if (kind, ns, name) in self._objects:
                raise StoreError(409, "AlreadyExists", f'{kind.plural} "{name}" already exists')
            obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
            apply_defaults(kind, obj)
            if kind in self.write_hooks:
                self.write_hooks[kind](obj, None)
            meta.update(namespace=ns, uid=str(uuid.uuid4()), generation=1,
                        creationTimestamp=now_rfc3339())
            return self._write(kind, ns, name, obj, "ADDED")

    def replace(self, kind: Kind, namespace: str, name: str, obj: dict,
                expect_rv: str | None = None) -> dict:
        with self._changed:
            old = self._require(kind, namespace, name)
            if expect_rv and expect_rv != old["metadata"]["resourceVersion"]:
                raise StoreError(409, "Conflict", f'Operation cannot be fulfilled on {kind.plural} "{name}": '
                                 "the object has been modified; please apply your changes to the latest version")
            new = copy.deepcopy(obj)
            new["metadata"] = {**old["metadata"], **{k: v for k, v in (obj.get("metadata") or {}).items()
                                                     if k in ("labels", "annotations", "ownerReferences")}}
            return self._commit(kind, namespace, name, old, new)

    def patch(self, kind: Kind, namespace: str, name: str, patch: dict, *, status_only: bool = False) -> dict:
        """Merge-patch; the status subresource only takes status, the main one ignores it."""
        if not isinstance(patch, dict):
            raise StoreError(400, "BadRequest", "merge patch body must be a JSON object")
        with self._changed:
            old = self._require(kind, namespace, name)
            if status_only:
                new = merge_patch(old, {"status": patch.get("status")} if "status" in patch else {})
            else:
                allowed = {k: v for k, v in patch.items() if k != "status"}
                meta = allowed.get("metadata")
                if isinstance(meta, dict):
                    allowed["metadata"] = {k: v for k, v in meta.items()
                                           if k in ("labels", "annotations", "ownerReferences", "finalizers")}
                new = merge_patch(old, allowed)
            return self._commit(kind, namespace, name, old, new)

    def mutate(self, kind: Kind, namespace: str, name: str, change: Callable[[dict], None]) -> dict | None:
        """Apply `change` to a copy of the object under the lock (controllers' writes).

        Returns the stored object, or None when it no longer exists; a no-op change
        writes nothing, so watchers only see real transitions.
        """
        with self._changed:
            old = self._objects.get((kind, namespace, name))
            if old is None:
                return None
            new = copy.deepcopy(old)
            change(new)
            return self._commit(kind, namespace, name, old, new)

    def delete(self, kind: Kind, namespace: str, name: str) -> dict:
        with self._changed:
            old = self._require(kind, namespace, name)
            del self._objects[(kind, namespace, name)]
            self._rv += 1
            gone = copy.deepcopy(old)
            gone["metadata"]["resourceVersion"] = str(self._rv)
            self._append(Event(self._rv, kind, "DELETED", gone))
            return copy.deepcopy(gone)

    def compact(self) -> None:
        """Forget all watch history, as an API server's cache does after a while (tests 410)."""
        with self._changed:
            self._history.clear()
            self._compacted = self._rv

    # -- internals -------------------------------------------------------------

    def _require(self, kind: Kind, namespace: str, name: str) -> dict:
        obj = self._objects.get((kind, namespace, name))
        if obj is None:
            raise StoreError(404, "NotFound", f'{kind.plural} "{name}" not found')
        return obj

    def _commit(self, kind: Kind, namespace: str, name: str, old: dict, new: dict) -> dict:
        for field in ("uid", "namespace", "name", "creationTimestamp"):
            new.setdefault("metadata", {})[field] = old["metadata"][field]
        new["apiVersion"], new["kind"] = kind.api_version, kind.kind
        apply_defaults(kind, new)
        if kind in self.write_hooks:
            self.write_hooks[kind](new, copy.deepcopy(old))
        compare_old = {k: v for k, v in old.items() if k != "metadata"}
        compare_new = {k: v for k, v in new.items() if k != "metadata"}
        meta_old = {k: v for k, v in old["metadata"].items() if k not in ("resourceVersion", "generation")}
        meta_new = {k: v for k, v in new["metadata"].items() if k not in ("resourceVersion", "generation")}
        if compare_old == compare_new and meta_old == meta_new:
            return copy.deepcopy(old)
        # generation counts spec changes only, like the API server does for these kinds.
        generation = old["metadata"].get("generation", 1)
        if old.get("spec") != new.get("spec"):
            generation += 1
        new["metadata"]["generation"] = generation
        return self._write(kind, namespace, name, new, "MODIFIED")

    def _write(self, kind: Kind, namespace: str, name: str, obj: dict, event: str) -> dict:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._objects[(kind, namespace, name)] = obj
        self._append(Event(self._rv, kind, event, copy.deepcopy(obj)))
        return copy.deepcopy(obj)

    def _append(self, event: Event) -> None:
        if len(self._history) == self._history.maxlen:
            self._compacted = self._history[0].rv
        self._history.append(event)
        self._changed.notify_all()


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll `predicate` until truthy or `timeout` passes (harness helper for tests)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def names(items: Iterable[dict]) -> list[str]:
    return [i["metadata"]["name"] for i in items]
