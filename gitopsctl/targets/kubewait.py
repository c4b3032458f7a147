"""KubeTarget.wait_healthy's machinery: follow every workload's rollout, watch its new pods.

One Waiter per wait: its loop reads Flux and each workload (Deployment, StatefulSet,
DaemonSet) and judges the rollout as `kubectl rollout status` does; per workload a
PodWatcher lists, then watches, the pods of the release being rolled out, so a crash loop
is reported the moment the API shows it. Once Flux applied the revision and every rollout
is complete, the service's health checks must pass several times in a row; without any,
the rollouts and pod readiness are the verdict.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from gitopsctl import flux
from gitopsctl.health import Check, HealthReport
from gitopsctl.targets import stop_requested
from gitopsctl.targets.kubeapi import KubeApiError, WatchExpired
from gitopsctl.targets.probes import run_check
from gitopsctl.targets.rollout import PodProblem, Rollout, current_pod_selector, pod_problem, pod_summary, \
    selector_of, workload_rollout

POLL_INTERVAL = 0.1  # woken early by pod events; this bounds how late a rollout status is seen
SAMPLE_INTERVAL = 0.5  # the default of timeouts.sample_interval
WATCH_SECONDS = 30


def workload_label(workload: Any) -> str:
    return f"{workload.kind} {workload.namespace}/{workload.name}"


def current_pods_selector(kube: Any, workload: Any, obj: dict, deadline: float) -> str | None:
    """The selector of the workload's newest release's pods, reading what it needs."""
    ns, selector = obj["metadata"]["namespace"], selector_of(obj)
    if workload.kind == "Deployment":
        return current_pod_selector("Deployment", obj,
                                    replicasets=kube.list_replicasets(ns, selector, deadline=deadline))
    if workload.kind == "DaemonSet":
        return current_pod_selector("DaemonSet", obj,
                                    revisions=kube.list_controller_revisions(ns, selector, deadline=deadline))
    return current_pod_selector(workload.kind, obj)


def observed(obj: dict) -> bool:
    return (obj.get("status") or {}).get("observedGeneration", 0) >= obj["metadata"].get("generation", 0)


@dataclass
class PodEvent:
    problem: PodProblem | None = None
    namespace: str = ""
    api_error: KubeApiError | None = None
    seen_at: float = field(default_factory=time.time)


class PodWatcher(threading.Thread):
    """Lists, then watches one release's pods; re-lists on drops, expiry and 410."""

    def __init__(self, kube: Any, namespace: str, selector: str, deadline: float, out: "queue.Queue[PodEvent]"):
        super().__init__(name=f"pod-watch-{selector}", daemon=True)
        self.kube, self.namespace, self.selector, self.deadline = kube, namespace, selector, deadline
        self.out = out
        self._pods: dict[str, dict] = {}
        self._lock = threading.Lock()  # the waiter reads the pods for evidence
        self._stream: Any = None
        self.relists = 0
        self.reported: set[tuple[str, str, str]] = set()
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        stream = self._stream
        if stream is not None:
            stream.close()  # do not leave a read blocked until the server's timeout

    def pods(self) -> list[dict]:
        with self._lock:
            return list(self._pods.values())

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # noqa: BLE001 - never die silently: the waiter would miss every crash
            self.out.put(PodEvent(api_error=KubeApiError(
                self.kube.redact(f"pod watch stopped: {type(exc).__name__}: {exc}"))))

    def _run(self) -> None:
        import urllib3
        from kubernetes.client.exceptions import ApiException

        while not self._halt.is_set() and time.monotonic() < self.deadline:
            try:
                items, rv = self.kube.list_pods(self.namespace, self.selector, deadline=self.deadline)
            except KubeApiError as exc:
                self.out.put(PodEvent(api_error=exc))
                return
            with self._lock:
                self._pods = {p["metadata"]["name"]: p for p in items}
            for pod in items:
                self._look(pod)
            left = int(min(WATCH_SECONDS, max(1, self.deadline - time.monotonic())))
            try:
                self._stream = self.kube.watch_pods(self.namespace, self.selector, rv, left)
                if self._halt.is_set():
                    self._stream.close()
                    return
                for event in self._stream:
                    if self._halt.is_set():
                        return
                    obj = event.get("object") or {}
                    name = (obj.get("metadata") or {}).get("name")
                    with self._lock:
                        if event.get("type") == "DELETED":
                            self._pods.pop(name, None)
                        elif name:
                            self._pods[name] = obj
                    if name and event.get("type") != "DELETED":
                        self._look(obj)
            except WatchExpired:
                pass  # 410 Gone: our version is older than the server keeps; re-list at once
            except (KubeApiError, ApiException, urllib3.exceptions.HTTPError, OSError, ValueError):
                time.sleep(0.1)  # the stream dropped or broke off mid-line; re-list and re-watch
            self.relists += 1

    def _look(self, pod: dict) -> None:
        problem = pod_problem(pod, early_crash=True)
        if problem is None:
            return
        key = (problem.pod, problem.container, problem.reason)
        if key not in self.reported:
            self.reported.add(key)
            self.out.put(PodEvent(problem=problem, namespace=self.namespace))


class Waiter:
    """One wait_healthy() run: the rollout loop in this thread, a pod watcher per workload."""

    def __init__(self, target: Any, sha: str, deadline: float):
        self.t = target
        self.sha = sha
        self.deadline = deadline
        self.started = time.monotonic()
        self.events: queue.Queue[PodEvent] = queue.Queue()
        self.watchers: dict[Any, PodWatcher] = {}
        self.flux_state = "pending"
        self.flux_reasons: dict[Any, str] = {}
        self.want = flux.git_revision(target.branch, sha)

    def stop(self) -> None:
        for watcher in self.watchers.values():
            watcher.stop()

    def report(self, healthy: bool, reason: str, checks: list[Check], **details: Any) -> HealthReport:
        relists = sum(w.relists for w in self.watchers.values())
        return HealthReport(target=self.t.name, healthy=healthy, reason=reason, checks=checks,
                            revision=self.want, elapsed=time.monotonic() - self.started,
                            details={"relists": relists, **details})

    def run(self) -> HealthReport:
        t = self.t
        last_flux_look = 0.0
        messages: dict[Any, str] = {}
        samples, last_probes = 0, None
        try:
            while True:
                now = time.monotonic()
                if now >= self.deadline:
                    return self._timeout(messages, last_probes)
                if stop_requested():
                    return self.report(False, f"{t.name}: wait stopped, its verdict is no longer needed",
                                       [], stopped=True)
                if self.flux_state != "applied" and now - last_flux_look >= 1.0:
                    last_flux_look = now
                    failed = self._look_at_flux()
                    if failed is not None:
                        return failed
                failure = self._drain_pod_events() or self._rejudge_pods()
                if failure is not None:
                    return failure
                rollouts: list[tuple[Any, Rollout]] = []
                for workload in t.workloads:
                    obj = t.kube.get_workload(workload.kind, workload.namespace, workload.name,
                                              deadline=self.deadline)
                    rollout = workload_rollout(workload.kind, obj)
                    label = workload_label(workload)
                    if rollout.failed:
                        return self.report(False, f"{t.name} rollout failed: {rollout.message}",
                                           [Check("rollout", False, f"{label}: {rollout.message}",
                                                  self._pod_evidence())])
                    if self.flux_state in ("applied", "checking"):
                        self._ensure_watcher(workload, obj)
                    if rollout.message != messages.get(workload):
                        t.progress(f"{label}: {rollout.message}")
                        messages[workload] = rollout.message
                    rollouts.append((workload, rollout))
                done = all(r.complete and w in self.watchers for w, r in rollouts) \
                    and self.flux_state in ("applied", "checking")
                if not done:
                    samples = 0
                    self._wait_events(POLL_INTERVAL)
                    continue
                base = [Check("flux", True, f"Kustomization at {self.want}")] + [
                    Check("rollout", True, f"{workload_label(w)}: {r.message}") for w, r in rollouts] + [
                    Check("pods", True, "no failing pods", self._pod_evidence())]
                if not t.health:
                    return self.report(True, "", base)
                last_probes = [run_check(check, t.http_timeout) for check in t.health]
                samples = samples + 1 if all(c.ok for c in last_probes) else 0
                if samples >= t.healthy_samples:
                    return self.report(True, "", base + [
                        Check(c.name, True, f"{c.message} ({samples} healthy answers in a row)")
                        for c in last_probes])
                self._wait_events(t.sample_interval)
        except KubeApiError as exc:
            return self.report(False, f"{t.name} health unknown: Kubernetes API failing",
                               [Check("kubernetes-api", False, exc.message)])

    def _wait_events(self, seconds: float) -> None:
        """Sleep, but wake the moment a pod watcher reports something."""
        try:
            event = self.events.get(timeout=max(0.0, min(seconds, self.deadline - time.monotonic())))
            self.events.put(event)  # handled by _drain_pod_events on the next turn
        except queue.Empty:
            pass

    def _drain_pod_events(self) -> HealthReport | None:
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return None
            if event.api_error is not None:
                raise event.api_error
            if event.problem is not None:
                return self._pod_failure(event.problem, event.namespace, event.seen_at)

    def _rejudge_pods(self) -> HealthReport | None:
        """Verdicts that come with time alone (a pull failure outlasting its grace) bring no watch event."""
        for watcher in self.watchers.values():
            for pod in watcher.pods():
                problem = pod_problem(pod, early_crash=True)
                if problem is not None:
                    return self._pod_failure(problem, watcher.namespace, time.time())
        return None

    def _pod_failure(self, problem: PodProblem, namespace: str, seen_at: float) -> HealthReport:
        t = self.t
        logs = t.logs(namespace, problem, self.deadline)
        elapsed = time.monotonic() - self.started
        reason = f"{t.name} {problem.summary()}"
        t.progress(f"{reason} {elapsed:.0f}s after rollout start")
        return self.report(False, reason, [Check("pods", False, reason, problem.evidence() + logs)],
                           pod=problem.pod, container=problem.container, pod_reason=problem.reason,
                           restarts=problem.restarts, seen_at=seen_at, reported_at=time.time())

    def _look_at_flux(self) -> HealthReport | None:
        """Every Kustomization, in order, at our revision (or Flux health-checking it)."""
        t = self.t
        token = t._applied[1] if t._applied and t._applied[0] == self.sha else ""
        states = []
        for ref in t.kustomizations:
            ks = t.kube.get_custom(flux.KUSTOMIZE_GROUP, flux.KUSTOMIZE_VERSION, flux.KUSTOMIZATIONS,
                                   ref.namespace, ref.name, deadline=self.deadline)
            verdict = flux.kustomization_verdict(ks, token, self.sha)
            if verdict.state == "failed":
                return self.report(False, f"{t.name} Kustomization {verdict.reason}",
                                   [Check("flux", False, f"Kustomization {ref.namespace}/{ref.name}: "
                                                         f"{verdict.reason}: {verdict.message}", self._pod_evidence())])
            if verdict.reason in flux.RETRIED_BY_FLUX and verdict.reason != self.flux_reasons.get(ref):
                t.progress(f"Kustomization {ref.namespace}/{ref.name}: {verdict.reason}: {verdict.message}")
            self.flux_reasons[ref] = verdict.reason
            states.append(verdict.state)
        if states and all(s == "applied" for s in states):
            self.flux_state = "applied"
        elif states and all(s in ("applied", "checking") for s in states):
            self.flux_state = "checking"
        else:
            self.flux_state = next((s for s in states if s not in ("applied", "checking")), "applied")
        return None

    def _ensure_watcher(self, workload: Any, obj: dict) -> None:
        if not observed(obj):
            return
        pod_selector = current_pods_selector(self.t.kube, workload, obj, self.deadline)
        if not pod_selector:
            return
        current = self.watchers.get(workload)
        if current is not None and current.selector == pod_selector:
            return
        if current is not None:
            current.stop()
        watcher = PodWatcher(self.t.kube, obj["metadata"]["namespace"], pod_selector, self.deadline, self.events)
        self.watchers[workload] = watcher
        watcher.start()

    def _pod_evidence(self) -> list[str]:
        return [pod_summary(p) for w in self.watchers.values() for p in w.pods()]

    def _timeout(self, messages: dict[Any, str], last_probes: list[Check] | None) -> HealthReport:
        t = self.t
        waited = time.monotonic() - self.started
        if self.flux_state not in ("applied", "checking"):
            msg = f"Kustomization did not apply {self.want} within {waited:.0f}s"
            return self.report(False, f"{t.name} not applied: timeout", [Check("flux", False, msg)])
        if last_probes is None:
            progress = "; ".join(f"{workload_label(w)}: {m}" for w, m in messages.items()) or "no progress"
            msg = f"rollout not complete after {waited:.0f}s: {progress}"
            return self.report(False, f"{t.name} rollout timed out ({progress})",
                               [Check("rollout", False, msg, self._pod_evidence())])
        failing = next((c for c in last_probes if not c.ok), last_probes[0])
        msg = f"{failing.message} not healthy after {waited:.0f}s"
        return self.report(False, f"{t.name} health check timed out ({failing.message})",
                           [Check(failing.name, False, msg, self._pod_evidence())])
