"""Outside observers for benchmarks/pipeline.py: push times and cluster timelines.

Both watch the lab from outside gitopsctl, so the figures do not depend on what
gitopsctl chooses to report about itself:

* PushLog: a `post-receive` hook in the lab's bare remote appends the wall-clock time
  and the new tip of every push, so "pushed at" is the moment the remote accepted it.
* ClusterWatch: a thread that wakes on every write to the emulator's store (the same
  writes the API serves) and records when each pod first appeared, first became
  ready and disappeared, and every change of the apps Kustomization's status.
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
class ClusterWatch:
    store: object
    namespace: str = "flux-system"
    kustomization: str = "apps"
    pods: dict[str, PodTimes] = field(default_factory=dict)
    kustomization_states: list[KustomizationState] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

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
        from gitopsctl.sandbox.lab.kube.store import KUSTOMIZATIONS, PODS

        rv = -1
        while not self._halt.is_set():
            try:
                rv = self.store.wait_for_change(rv, 0.2)
                now = time.time()
                self._pods(self.store.list(PODS)[0], now)
                ks = self.store.find(KUSTOMIZATIONS, self.namespace, self.kustomization)
                if ks is not None:
                    self._kustomization(ks, now)
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

    # ------------------------------------------------------------- questions

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


def backend_swap(client, project: str, image_fragment: str, since: float, until: float) -> BackendSwap:
    events = client.events(since=int(since) - 1, until=int(until) + 2, decode=True,
                           filters={"type": "container", "label": f"com.docker.compose.project={project}"})
    old_kill = old_die = new_start = new_healthy = None
    for event in events:
        when = event.get("timeNano", 0) / 1e9
        if when < since:
            continue
        action = event.get("Action") or event.get("status") or ""
        image = (event.get("Actor") or {}).get("Attributes", {}).get("image", "")
        new = image_fragment in image
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
