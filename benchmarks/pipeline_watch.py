"""Outside observers for benchmarks/pipeline.py: push times and cluster timelines.

Both watch the lab from outside gitopsctl, so the figures do not depend on what
gitopsctl chooses to report about itself:

* PushLog: a `post-receive` hook in the lab's bare remote appends the wall-clock time
  and the new tip of every push, so "pushed at" is the moment the remote accepted it.
* ClusterWatch: a thread that wakes on every write to the emulator's store (the same
  writes the API serves) and records when each pod first appeared, first became
  ready and disappeared, every change of the apps Kustomization's status, and for
  each Flux object (the GitRepository, every Kustomization) when a reconcile was
  requested of it and when it reached a revision: so Flux's own work (fetching the
  source, applying a Kustomization) is told apart from the time gitopsctl takes
  between asking Flux one thing and the next.
"""

from __future__ import annotations

import os
import shlex
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HOOK = """#!/bin/sh
# Written by benchmarks/pipeline.py: log when the remote accepted each push.
while read old new ref; do
  printf '%s %s %s\\n' "$(date +%s.%N)" "$new" "$ref" >> {log}
done
"""


class PushLog:
    def __init__(self, bare: Path, log: Path):
        self.log = log
        hook = Path(bare) / "hooks" / "post-receive"
        if hook.exists():
            raise SystemExit(f"{hook} already exists; the benchmark will not replace it")
        hook.write_text(HOOK.format(log=shlex.quote(str(log))))
        hook.chmod(hook.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    def entries(self) -> list[tuple[float, str, str]]:
        try:
            lines = self.log.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            when, new, ref = line.split()
            out.append((float(when), new, ref))
        return out

    def pushed_at(self, sha: str) -> float:
        """When the remote first accepted `sha` as a branch tip."""
        for when, new, _ref in self.entries():
            if new == sha:
                return when
        raise SystemExit(f"the remote never received {sha[:12]} as a branch tip")


@dataclass
class PodTimes:
    name: str
    image: str
    seen: float
    ready: float | None = None
    gone: float | None = None


@dataclass
class KustomizationState:
    at: float
    applied: str
    attempted: str
    ready: str
    reason: str


@dataclass
class FluxMark:
    at: float
    kind: str           # "GitRepository" | "Kustomization"
    name: str
    what: str           # "requested" | "reached"
    value: str          # the request token, or the revision reached (Ready for a Kustomization)


@dataclass
class ClusterWatch:
    store: object
    namespace: str = "flux-system"
    kustomization: str = "apps"
    pods: dict[str, PodTimes] = field(default_factory=dict)
    kustomization_states: list[KustomizationState] = field(default_factory=list)
    flux_marks: list[FluxMark] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # (kind, name) -> (the last request token, the last revision reached) seen
    _flux_last: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cluster-watch", daemon=True)

    def start(self) -> "ClusterWatch":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._halt.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        from gitopsctl.sandbox.lab.kube.store import GIT_REPOSITORIES, KUSTOMIZATIONS, PODS

        rv = -1
        while not self._halt.is_set():
            try:
                rv = self.store.wait_for_change(rv, 0.2)
                now = time.time()
                self._pods(self.store.list(PODS)[0], now)
                ks = self.store.find(KUSTOMIZATIONS, self.namespace, self.kustomization)
                if ks is not None:
                    self._kustomization(ks, now)
                for kind, objects in (("GitRepository", self.store.list(GIT_REPOSITORIES)[0]),
                                      ("Kustomization", self.store.list(KUSTOMIZATIONS)[0])):
                    for obj in objects:
                        self._flux(kind, obj, now)
            except Exception as exc:  # noqa: BLE001 - keep watching; report at the end
                self.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.2)

    def _pods(self, pods: list[dict], now: float) -> None:
        present = set()
        for pod in pods:
            name = pod["metadata"]["name"]
            present.add(name)
            containers = (pod.get("spec") or {}).get("containers") or [{}]
            times = self.pods.setdefault(name, PodTimes(name, containers[0].get("image", ""), now))
            conditions = (pod.get("status") or {}).get("conditions") or []
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
            if ready and times.ready is None:
                times.ready = now
        for name, times in self.pods.items():
            if name not in present and times.gone is None:
                times.gone = now

    def _kustomization(self, ks: dict, now: float) -> None:
        status = ks.get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        state = KustomizationState(now, status.get("lastAppliedRevision", ""),
                                   status.get("lastAttemptedRevision", ""),
                                   ready.get("status", ""), ready.get("reason", ""))
        last = self.kustomization_states[-1] if self.kustomization_states else None
        if last is None or (last.applied, last.attempted, last.ready, last.reason) != \
                (state.applied, state.attempted, state.ready, state.reason):
            self.kustomization_states.append(state)

    def _flux(self, kind: str, obj: dict, now: float) -> None:
        from gitopsctl.flux import REQUESTED_AT

        name = obj["metadata"]["name"]
        token = ((obj["metadata"].get("annotations") or {}).get(REQUESTED_AT)) or ""
        status = obj.get("status") or {}
        if kind == "GitRepository":
            reached = (status.get("artifact") or {}).get("revision", "")
        else:
            ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
            reached = status.get("lastAppliedRevision", "") if ready.get("status") == "True" else ""
        last = self._flux_last
        before = last.get((kind, name), ("", ""))
        if token and token != before[0]:
            self.flux_marks.append(FluxMark(now, kind, name, "requested", token))
        if reached and reached != before[1]:
            self.flux_marks.append(FluxMark(now, kind, name, "reached", reached))
        last[(kind, name)] = (token or before[0], reached or before[1])

    # ------------------------------------------------------------- questions

    def flux_requested(self, kind: str, name: str, after: float) -> float | None:
        return next((m.at for m in list(self.flux_marks) if m.kind == kind and m.name == name
                     and m.what == "requested" and m.at >= after), None)

    def flux_reached(self, kind: str, name: str, sha: str, after: float) -> float | None:
        return next((m.at for m in list(self.flux_marks) if m.kind == kind and m.name == name
                     and m.what == "reached" and m.value.endswith(sha) and m.at >= after), None)

    def pods_with_image(self, fragment: str) -> list[PodTimes]:
        return [p for p in list(self.pods.values()) if fragment in p.image]

    def applied_at(self, sha: str, after: float) -> float | None:
        """First time the Kustomization was Ready with `sha` as its last applied revision."""
        for state in list(self.kustomization_states):
            if state.at >= after and state.applied.endswith(sha) and state.ready == "True":
                return state.at
        return None

    def attempted_at(self, sha: str, after: float) -> float:
        """First time the Kustomization's status named `sha` as the revision it is applying."""
        found = next((s.at for s in list(self.kustomization_states)
                      if s.at >= after and s.attempted.endswith(sha)), None)
        if found is None:
            raise SystemExit(f"the Kustomization never attempted {sha[:12]}")
        return found

    def first_reason(self, reason: str, after: float) -> float | None:
        return next((s.at for s in list(self.kustomization_states)
                     if s.at >= after and s.reason == reason), None)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


@dataclass
class BackendSwap:
    """What `docker compose up` did to the backend, read from the engine's own events."""

    old_stop: float      # first kill of the old container -> it died (the app's shutdown)
    new_healthy: float   # new container started -> its healthcheck passed


def container_events(client, project: str, since: float, until: float):
    """(when, action, attributes) of the compose project's containers, from the engine."""
    events = client.events(since=int(since) - 1, until=int(until) + 2, decode=True,
                           filters={"type": "container", "label": f"com.docker.compose.project={project}"})
    for event in events:
        when = event.get("timeNano", 0) / 1e9
        if when >= since:
            yield (when, event.get("Action") or event.get("status") or "",
                   (event.get("Actor") or {}).get("Attributes", {}))


def backend_swap(client, project: str, image_fragment: str, since: float, until: float) -> BackendSwap:
    old_kill = old_die = new_start = new_healthy = None
    for when, action, attributes in container_events(client, project, since, until):
        new = image_fragment in attributes.get("image", "")
        if not new and action == "kill" and old_kill is None:
            old_kill = when
        elif not new and action == "die" and old_die is None:
            old_die = when
        elif new and action == "start" and new_start is None:
            new_start = when
        elif new and action.startswith("health_status: healthy") and new_healthy is None:
            new_healthy = when
    if new_start is None or new_healthy is None:
        raise SystemExit(f"no start and healthy events for the new backend ({image_fragment}) in the engine")
    stop = (old_die - old_kill) if (old_kill is not None and old_die is not None) else 0.0
    return BackendSwap(old_stop=stop, new_healthy=new_healthy - new_start)


@dataclass
class FluxWork:
    """D1 through Flux: what Flux itself took, and the gaps between gitopsctl's requests."""

    work: float                 # inherent: source fetch + each Kustomization's apply
    gaps: dict[str, float]      # overhead: from the push, and from each step done to the next request


def flux_work(watch: ClusterWatch, sha: str, pushed: float, first_pod: float,
              kustomizations: list[str], source: str = "flux-system") -> FluxWork:
    """Split D1 pushed -> first frontend pod created into Flux's work and gitopsctl's gaps.

    Flux's work per object runs from the reconcile request it saw (the annotation
    written) to the object reaching D1: the GitRepository's artifact, a Kustomization
    Ready at D1, and for the last one (the frontend's) its first pod created. A
    Kustomization Flux reconciled on its own when the source moved (kustomize-controller
    watches its source's revision) reached D1 before gitopsctl asked: its work runs from
    the step before it, and gitopsctl's confirming request is in the gap after it."""
    asked = watch.flux_requested("GitRepository", source, pushed)
    fetched = watch.flux_reached("GitRepository", source, sha, pushed)
    if asked is None or fetched is None:
        raise SystemExit(f"no reconcile request and fetch of GitRepository {source} at {sha[:7]} seen")
    gaps = {"D1 pushed -> source reconcile requested (stage's kube client, the request)": asked - pushed}
    work = fetched - asked
    done, previous = fetched, "source fetched"
    for index, name in enumerate(kustomizations):
        requested = watch.flux_requested("Kustomization", name, done - 0.001)
        last = index == len(kustomizations) - 1
        reached = first_pod if last else watch.flux_reached("Kustomization", name, sha, done - 0.001)
        if reached is None:
            raise SystemExit(f"Kustomization {name} was never seen Ready at {sha[:7]}")
        start = requested if requested is not None and requested <= reached else done
        gaps[f"{previous} -> {name} reconcile requested (gitopsctl sees it, asks the next)"] = start - done
        work += reached - start
        done, previous = reached, f"{name} applied"
    return FluxWork(work=work, gaps=gaps)
