"""The frontend target: Flux on Kubernetes, judged by gitopsctl itself.

apply()         does what `flux reconcile kustomization --with-source` does (request a
                reconcile of the GitRepository, then of the Kustomization) and waits until
                each has handled the request at the pushed commit.
wait_healthy()  follows the Deployment rollout and watches the new ReplicaSet's pods, so a
                crash loop is reported as soon as the API shows it instead of when Flux's
                health check or the progress deadline runs out; then the health URL must
                answer 2xx several times in a row.
check_health()  one look, no waiting.
observe()       verify's read-only wait: the same looks, repeated until healthy at the
                revision git says is live (or the deadline); it never writes to the API,
                not even the reconcile-request annotation.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from gitopsctl import flux
from gitopsctl.config import Config, KubernetesTarget, ObjectRef
from gitopsctl.errors import CheckFailed, ConfigError, InputError
from gitopsctl.health import Check, HealthReport, probe_http
from gitopsctl.repo import is_full_sha
from gitopsctl.targets.kubeapi import KubeApi, KubeApiError, WatchExpired, resolve_kubeconfig
from gitopsctl.targets.rollout import (TEMPLATE_HASH_LABEL, PodProblem, newest_replicaset, pod_problem,
                                       pod_summary, rollout_status)

LOG_TAIL_LINES = 20
POLL_INTERVAL = 0.25
SAMPLE_INTERVAL = 0.5
WATCH_SECONDS = 30
Progress = Callable[[str], None]


class ReconcileFailed(CheckFailed):
    """Flux did not apply the revision; `report` holds the evidence."""

    def __init__(self, report: HealthReport):
        check = report.failed_check
        super().__init__(report.reason, details={"report": report.to_dict()},
                         hint=check.message if check else None)
        self.report = report


def _quiet(_: str) -> None:
    pass


class KubeTarget:
    """The Kubernetes half of a deploy, for one service (normally `frontend`)."""

    def __init__(self, settings: KubernetesTarget, *, name: str = "frontend", branch: str = "main",
                 http_timeout: float = 5.0, healthy_samples: int = 3, kube: KubeApi | None = None,
                 environ: Mapping[str, str] | None = None, progress: Progress | None = None,
                 contains: Callable[[str, str], bool] | None = None):
        import os

        self.name = name
        self.settings = settings
        self.branch = branch
        self.http_timeout = http_timeout
        self.healthy_samples = healthy_samples
        self.progress = progress or _quiet
        self._kube = kube
        self._environ = environ if environ is not None else os.environ
        self._applied: tuple[str, str] | None = None  # (sha, token) of the last apply()
        # contains(newer, ours): does commit `newer` include `ours`? When the branch moved on
        # after our push (another pipeline, a developer), Flux applies the newer commit, which
        # still carries our change; without this hook only our exact commit counts.
        self.contains = contains
        self._moved: dict[str, str] = {}  # our sha -> the newer sha Flux applied instead

    @classmethod
    def from_config(cls, config: Config, service: str = "frontend", *, progress: Progress | None = None,
                    environ: Mapping[str, str] | None = None,
                    contains: Callable[[str, str], bool] | None = None) -> "KubeTarget":
        settings = config.targets.kubernetes
        if settings is None:
            raise ConfigError("targets.kubernetes is not configured",
                              hint="add a `targets.kubernetes:` section to gitopsctl.yaml")
        return cls(settings, name=service, branch=config.git.branch, http_timeout=config.timeouts.http,
                   healthy_samples=config.timeouts.healthy_samples, environ=environ, progress=progress,
                   contains=contains)

    @property
    def kube(self) -> KubeApi:
        if self._kube is None:
            path = resolve_kubeconfig(self.settings.kubeconfig, self._environ)
            self._kube = KubeApi(path, self.settings.context)
        return self._kube

    # -- apply: reconcile source, then kustomization ------------------------------

    def apply(self, revision: str, deadline: float) -> None:
        sha = _full_sha(revision)
        token = flux.request_token()
        started = time.monotonic()
        repo = self.settings.git_repository
        ours = sha
        sha = self._reconcile(flux.SOURCE_GROUP, flux.SOURCE_VERSION, flux.GIT_REPOSITORIES, "GitRepository",
                              repo, sha, token, deadline, started, flux.source_verdict)
        if sha != ours:
            self._moved[ours] = sha
        ks = self.settings.kustomization
        self._reconcile(flux.KUSTOMIZE_GROUP, flux.KUSTOMIZE_VERSION, flux.KUSTOMIZATIONS, "Kustomization",
                        ks, sha, token, deadline, started, flux.kustomization_verdict)
        self._applied = (sha, token)

    def _reconcile(self, group: str, version: str, plural: str, kind: str, ref: ObjectRef, sha: str,
                   token: str, deadline: float, started: float,
                   judge: Callable[[Mapping[str, Any], str, str], flux.Verdict]) -> str:
        """Request a reconcile and wait; returns the commit judged (ours, or a newer one
        that contains ours when the branch moved on)."""
        label = f"{kind} {ref.namespace}/{ref.name}"
        want = flux.git_revision(self.branch, sha)
        try:
            obj = self.kube.get_custom(group, version, plural, ref.namespace, ref.name, deadline=deadline)
            if flux.suspended(obj):
                command = "source git" if kind == "GitRepository" else kind.lower()
                self._fail_reconcile(label, "Suspended", f"{label} is suspended", want, started,
                                     hint=f"resume it: flux resume {command} {ref.name} -n {ref.namespace}")
            self.progress(f"requesting reconcile of {label}")
            self._request(group, version, plural, ref, token, deadline)
            last_message, re_requests, requested_at = "", 0, time.monotonic()
            while True:
                obj = self.kube.get_custom(group, version, plural, ref.namespace, ref.name, deadline=deadline)
                verdict = judge(obj, token, sha)
                if verdict.state in ("applied", "checking"):
                    self.progress(f"{label}: {verdict.message or verdict.reason}")
                    return sha
                if verdict.reason == "OtherRevision" and self.contains is not None:
                    newer = _artifact_sha(obj)
                    if newer and newer != sha and self.contains(newer, sha):
                        self.progress(f"{label}: the branch moved on to {newer[:7]}, which contains "
                                      f"{sha[:7]}; judging that revision")
                        sha, want = newer, flux.git_revision(self.branch, newer)
                        continue
                if verdict.state == "failed":
                    self._fail_reconcile(label, verdict.reason, verdict.message, want, started)
                if verdict.reason == "OtherRevision" and re_requests < 3 \
                        and time.monotonic() - requested_at >= 1.0 * (re_requests + 1):
                    # The source fetched before our push was visible; ask again (bounded, spaced out).
                    re_requests += 1
                    token, requested_at = flux.request_token(), time.monotonic()
                    self._request(group, version, plural, ref, token, deadline)
                message = f"{label}: {verdict.reason} {verdict.message}".strip()
                if message != last_message:
                    self.progress(f"waiting for {message}")
                    last_message = message
                if time.monotonic() >= deadline:
                    self._fail_reconcile(label, "Timeout",
                                         f"{label} did not reach {want} within {time.monotonic() - started:.0f}s; "
                                         f"last state: {verdict.reason} {verdict.message}".strip(), want, started)
                time.sleep(POLL_INTERVAL)
        except KubeApiError as exc:
            self._fail_reconcile(label, "APIError", exc.message, want, started, hint=exc.hint)
        raise AssertionError("unreachable")  # pragma: no cover

    def _request(self, group: str, version: str, plural: str, ref: ObjectRef, token: str, deadline: float) -> None:
        # A merge patch of one annotation needs no resourceVersion; a 409 is retried by the client layer.
        body = {"metadata": {"annotations": {flux.REQUESTED_AT: token}}}
        self.kube.patch_custom(group, version, plural, ref.namespace, ref.name, body, deadline=deadline)

    def _fail_reconcile(self, label: str, reason: str, message: str, want: str, started: float,
                        hint: str | None = None) -> None:
        report = HealthReport(target=self.name, healthy=False,
                              reason=f"{self.name} {label.split()[0]} {reason}",
                              revision=want, elapsed=time.monotonic() - started,
                              checks=[Check("flux", False, f"{label}: {reason}: {message}".rstrip(": "),
                                            [message] if message else [])])
        exc = ReconcileFailed(report)
        if hint:
            exc.hint = hint
        raise exc

    # -- wait_healthy: rollout, pods, HTTP -----------------------------------------

    def wait_healthy(self, revision: str, deadline: float) -> HealthReport:
        sha = _full_sha(revision)
        sha = self._moved.get(sha, sha)
        watch = _Waiter(self, sha, deadline)
        try:
            return watch.run()
        finally:
            watch.stop()

    def check_health(self) -> HealthReport:
        started = time.monotonic()
        dep = self.settings.deployment
        checks: list[Check] = []
        report = HealthReport(target=self.name, healthy=False)
        deadline = started + 20
        try:
            ks_ref = self.settings.kustomization
            ks = self.kube.get_custom(flux.KUSTOMIZE_GROUP, flux.KUSTOMIZE_VERSION, flux.KUSTOMIZATIONS,
                                      ks_ref.namespace, ks_ref.name, deadline=deadline)
            ready = flux.condition(ks)
            applied = flux.status(ks).get("lastAppliedRevision", "")
            report.revision = applied or None
            ok = (bool(ready and ready.true) or _reconciling(ks)) and not flux.suspended(ks)
            checks.append(Check("flux", ok,
                                f"Kustomization {ks_ref.namespace}/{ks_ref.name}: "
                                + (f"{ready.reason}: {ready.message}" if ready else "no Ready condition")
                                + (" (suspended)" if flux.suspended(ks) else ""),
                                [f"lastAppliedRevision {applied}"] if applied else []))
            deployment = self.kube.get_deployment(dep.namespace, dep.name, deadline=deadline)
            rollout = rollout_status(deployment)
            checks.append(Check("rollout", rollout.complete, rollout.message))
            pods = self._current_pods(deployment, deadline)
            problems = [p for p in (pod_problem(pod) for pod in pods) if p]
            checks.append(Check("pods", not problems,
                                problems[0].summary() if problems else f"{len(pods)} pods without problems",
                                [pod_summary(p) for p in pods]))
        except KubeApiError as exc:
            checks.append(Check("kubernetes-api", False, exc.message))
        self._judge(report, checks)
        report.elapsed = time.monotonic() - started
        return report

    def _judge(self, report: HealthReport, checks: list[Check]) -> None:
        """Add the HTTP probe to `checks` and set the verdict: healthy only if all pass."""
        result = probe_http(self.settings.health_url, timeout=self.http_timeout)
        checks.append(Check("http", result.ok, f"{self.settings.health_url}: {result.message}"))
        report.checks = checks
        report.healthy = all(c.ok for c in checks)
        failed = report.failed_check
        report.reason = "" if report.healthy else f"{self.name} {failed.message}" if failed else ""

    def observe(self, deadline: float,
                mismatch: Callable[[str], str | None] | None = None) -> HealthReport:
        """Watch (reads only) until healthy_samples healthy looks in a row, a fatal look or the deadline.

        `mismatch(sha)` says why a revision Flux reports is not what git says is live (None
        when it is). Fatal, so not waited out: a suspended object, a failed rollout, a
        failing pod; Flux catching up with the branch, a rollout in progress or a failing
        health URL are waited for.
        """
        started = time.monotonic()
        in_row = 0
        while True:
            report, fatal = self._observe_once(deadline, mismatch)
            in_row = in_row + 1 if report.healthy else 0
            if report.healthy and in_row >= self.healthy_samples:
                report.details["samples"] = in_row
                break
            if fatal or time.monotonic() + SAMPLE_INTERVAL > deadline:
                if report.healthy:  # healthy, but not for long enough to count
                    report.healthy = False
                    report.reason = (f"{self.name} healthy in only {in_row}/{self.healthy_samples} "
                                     "looks before the deadline")
                break
            time.sleep(SAMPLE_INTERVAL)
        report.elapsed = time.monotonic() - started
        return report

    def _observe_once(self, deadline: float,
                      mismatch: Callable[[str], str | None] | None) -> tuple[HealthReport, bool]:
        checks: list[Check] = []
        fatal = False
        report = HealthReport(target=self.name, healthy=False)
        look_deadline = min(deadline, time.monotonic() + 20)
        try:
            for kind, group, version, plural, ref in (
                    ("GitRepository", flux.SOURCE_GROUP, flux.SOURCE_VERSION, flux.GIT_REPOSITORIES,
                     self.settings.git_repository),
                    ("Kustomization", flux.KUSTOMIZE_GROUP, flux.KUSTOMIZE_VERSION, flux.KUSTOMIZATIONS,
                     self.settings.kustomization)):
                obj = self.kube.get_custom(group, version, plural, ref.namespace, ref.name,
                                           deadline=look_deadline)
                check, revision = _flux_look(kind, ref, obj, mismatch)
                checks.append(check)
                fatal = fatal or flux.suspended(obj)
                if kind == "Kustomization":
                    report.revision = revision or None
            deployment = self.kube.get_deployment(self.settings.deployment.namespace,
                                                  self.settings.deployment.name, deadline=look_deadline)
            rollout = rollout_status(deployment)
            fatal = fatal or rollout.failed
            checks.append(Check("rollout", rollout.complete, rollout.message))
            pods = self._current_pods(deployment, look_deadline)
            problems = [p for p in (pod_problem(pod) for pod in pods) if p]
            evidence = [pod_summary(p) for p in pods]
            if problems:
                fatal = True
                evidence += self.logs(self.settings.deployment.namespace, problems[0], look_deadline)
            checks.append(Check("pods", not problems,
                                problems[0].summary() if problems else f"{len(pods)} pods without problems",
                                evidence))
        except KubeApiError as exc:
            checks.append(Check("kubernetes-api", False, exc.message))
        self._judge(report, checks)
        return report, fatal

    def _current_pods(self, deployment: Mapping[str, Any], deadline: float) -> list[dict]:
        selector = _selector(deployment)
        ns = deployment["metadata"]["namespace"]
        rs = newest_replicaset(self.kube.list_replicasets(ns, selector, deadline=deadline), deployment)
        if rs is None:
            return []
        hash_ = ((rs.get("metadata") or {}).get("labels") or {}).get(TEMPLATE_HASH_LABEL)
        pods, _ = self.kube.list_pods(ns, f"{selector},{TEMPLATE_HASH_LABEL}={hash_}" if hash_ else selector,
                                      deadline=deadline)
        return pods

    def logs(self, namespace: str, problem: PodProblem, deadline: float) -> list[str]:
        """Last log lines of the failing container (its previous run for a crash loop)."""
        if problem.reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError"):
            return []  # the container never ran: there is no log
        log_deadline = min(deadline, time.monotonic() + 1.5)
        for previous in (problem.restarts > 0, False) if problem.restarts > 0 else (False,):
            try:
                text = self.kube.pod_log(namespace, problem.pod, problem.container or None, previous=previous,
                                         tail_lines=LOG_TAIL_LINES, deadline=log_deadline)
                return [f"log: {line}" for line in text.splitlines()[-LOG_TAIL_LINES:]]
            except KubeApiError:
                continue
        return []


@dataclass
class _PodEvent:
    problem: PodProblem | None = None
    api_error: KubeApiError | None = None
    seen_at: float = field(default_factory=time.time)


class _PodWatcher(threading.Thread):
    """Lists, then watches the new ReplicaSet's pods; re-lists on drops, expiry and 410."""

    def __init__(self, target: KubeTarget, namespace: str, selector: str, deadline: float,
                 out: "queue.Queue[_PodEvent]"):
        super().__init__(name=f"pod-watch-{selector}", daemon=True)
        self.target, self.namespace, self.selector, self.deadline = target, namespace, selector, deadline
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
            self.out.put(_PodEvent(api_error=KubeApiError(
                self.target.kube.redact(f"pod watch stopped: {type(exc).__name__}: {exc}"))))

    def _run(self) -> None:
        import urllib3
        from kubernetes.client.exceptions import ApiException

        kube = self.target.kube
        while not self._halt.is_set() and time.monotonic() < self.deadline:
            try:
                items, rv = kube.list_pods(self.namespace, self.selector, deadline=self.deadline)
            except KubeApiError as exc:
                self.out.put(_PodEvent(api_error=exc))
                return
            with self._lock:
                self._pods = {p["metadata"]["name"]: p for p in items}
            for pod in items:
                self._look(pod)
            left = int(min(WATCH_SECONDS, max(1, self.deadline - time.monotonic())))
            try:
                self._stream = kube.watch_pods(self.namespace, self.selector, rv, left)
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
            self.out.put(_PodEvent(problem=problem))


class _Waiter:
    """One wait_healthy() run: the rollout loop in this thread, the pod watcher in another."""

    def __init__(self, target: KubeTarget, sha: str, deadline: float):
        self.t = target
        self.sha = sha
        self.deadline = deadline
        self.started = time.monotonic()
        self.events: queue.Queue[_PodEvent] = queue.Queue()
        self.watcher: _PodWatcher | None = None
        self.flux_state = "pending"
        self.flux_reason = ""
        self.want = flux.git_revision(target.branch, sha)

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()

    def report(self, healthy: bool, reason: str, checks: list[Check], **details: Any) -> HealthReport:
        return HealthReport(target=self.t.name, healthy=healthy, reason=reason, checks=checks,
                            revision=self.want, elapsed=time.monotonic() - self.started,
                            details={"relists": self.watcher.relists if self.watcher else 0, **details})

    def run(self) -> HealthReport:
        t = self.t
        dep_ref = t.settings.deployment
        last_flux_look = 0.0
        rollout_msg, samples, last_http = "", 0, None
        try:
            while True:
                now = time.monotonic()
                if now >= self.deadline:
                    return self._timeout(rollout_msg, last_http)
                if self.flux_state != "applied" and now - last_flux_look >= 1.0:
                    last_flux_look = now
                    failed = self._look_at_flux()
                    if failed is not None:
                        return failed
                failure = self._drain_pod_events() or self._rejudge_pods()
                if failure is not None:
                    return failure
                deployment = t.kube.get_deployment(dep_ref.namespace, dep_ref.name, deadline=self.deadline)
                rollout = rollout_status(deployment)
                if rollout.failed:
                    return self.report(False, f"{t.name} rollout failed: {rollout.message}",
                                       [Check("rollout", False, rollout.message, self._pod_evidence())])
                if self.flux_state in ("applied", "checking"):
                    self._ensure_watcher(deployment)
                if rollout.message != rollout_msg:
                    t.progress(f"Deployment {dep_ref.namespace}/{dep_ref.name}: {rollout.message}")
                    rollout_msg = rollout.message
                if rollout.complete and self.flux_state in ("applied", "checking") and self.watcher:
                    result = probe_http(t.settings.health_url, timeout=t.http_timeout)
                    last_http = result
                    samples = samples + 1 if result.ok else 0
                    if samples >= t.healthy_samples:
                        return self.report(True, "", [
                            Check("flux", True, f"Kustomization at {self.want}"),
                            Check("rollout", True, rollout.message),
                            Check("pods", True, "no failing pods", self._pod_evidence()),
                            Check("http", True, f"{t.settings.health_url}: {samples} healthy answers in a row, "
                                                f"last {result.message}")])
                    self._wait_events(SAMPLE_INTERVAL)
                else:
                    samples = 0
                    self._wait_events(POLL_INTERVAL)
        except KubeApiError as exc:
            return self.report(False, f"{t.name} health unknown: Kubernetes API failing",
                               [Check("kubernetes-api", False, exc.message)])

    def _wait_events(self, seconds: float) -> None:
        """Sleep, but wake the moment the pod watcher reports something."""
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
                return self._pod_failure(event.problem, event.seen_at)

    def _rejudge_pods(self) -> HealthReport | None:
        """Verdicts that come with time alone (a pull failure outlasting its grace) bring no watch event."""
        if self.watcher is None:
            return None
        for pod in self.watcher.pods():
            problem = pod_problem(pod, early_crash=True)
            if problem is not None:
                return self._pod_failure(problem, time.time())
        return None

    def _pod_failure(self, problem: PodProblem, seen_at: float) -> HealthReport:
        t = self.t
        namespace = t.settings.deployment.namespace
        logs = t.logs(namespace, problem, self.deadline)
        elapsed = time.monotonic() - self.started
        reason = f"{t.name} {problem.summary()}"
        t.progress(f"{reason} {elapsed:.0f}s after rollout start")
        return self.report(False, reason, [Check("pods", False, reason, problem.evidence() + logs)],
                           pod=problem.pod, container=problem.container, pod_reason=problem.reason,
                           restarts=problem.restarts, seen_at=seen_at, reported_at=time.time())

    def _look_at_flux(self) -> HealthReport | None:
        t = self.t
        ref = t.settings.kustomization
        ks = t.kube.get_custom(flux.KUSTOMIZE_GROUP, flux.KUSTOMIZE_VERSION, flux.KUSTOMIZATIONS,
                               ref.namespace, ref.name, deadline=self.deadline)
        token = t._applied[1] if t._applied and t._applied[0] == self.sha else ""
        verdict = flux.kustomization_verdict(ks, token, self.sha)
        if verdict.state == "failed":
            return self.report(False, f"{t.name} Kustomization {verdict.reason}",
                               [Check("flux", False, f"Kustomization {ref.namespace}/{ref.name}: "
                                                     f"{verdict.reason}: {verdict.message}", self._pod_evidence())])
        if verdict.reason in flux.RETRIED_BY_FLUX and verdict.reason != self.flux_reason:
            t.progress(f"Kustomization {ref.namespace}/{ref.name}: {verdict.reason}: {verdict.message}")
        self.flux_state, self.flux_reason = verdict.state, verdict.reason
        return None

    def _ensure_watcher(self, deployment: dict) -> None:
        if (deployment.get("status") or {}).get("observedGeneration", 0) < deployment["metadata"].get("generation", 0):
            return
        ns = deployment["metadata"]["namespace"]
        selector = _selector(deployment)
        rs = newest_replicaset(self.t.kube.list_replicasets(ns, selector, deadline=self.deadline), deployment)
        hash_ = ((rs or {}).get("metadata", {}).get("labels") or {}).get(TEMPLATE_HASH_LABEL)
        if not hash_:
            return
        pod_selector = f"{selector},{TEMPLATE_HASH_LABEL}={hash_}"
        if self.watcher is not None and self.watcher.selector == pod_selector:
            return
        if self.watcher is not None:
            self.watcher.stop()
        self.watcher = _PodWatcher(self.t, ns, pod_selector, self.deadline, self.events)
        self.watcher.start()

    def _pod_evidence(self) -> list[str]:
        if self.watcher is None:
            return []
        return [pod_summary(p) for p in self.watcher.pods()]

    def _timeout(self, rollout_msg: str, last_http: Any) -> HealthReport:
        t = self.t
        waited = time.monotonic() - self.started
        if self.flux_state not in ("applied", "checking"):
            msg = f"Kustomization did not apply {self.want} within {waited:.0f}s"
            return self.report(False, f"{t.name} not applied: timeout", [Check("flux", False, msg)])
        if last_http is None:
            evidence = self._pod_evidence()
            msg = f"rollout not complete after {waited:.0f}s: {rollout_msg or 'no progress'}"
            return self.report(False, f"{t.name} rollout timed out ({rollout_msg or 'no progress'})",
                               [Check("rollout", False, msg, evidence)])
        msg = f"{t.settings.health_url} not healthy after {waited:.0f}s: {last_http.message}"
        return self.report(False, f"{t.name} health check timed out ({last_http.message})",
                           [Check("http", False, msg, self._pod_evidence())])


def _flux_look(kind: str, ref: ObjectRef, obj: Mapping[str, Any],
               mismatch: Callable[[str], str | None] | None) -> tuple[Check, str]:
    """One Flux object judged without a reconcile request: Ready, not suspended, and at
    (the equivalent of) the revision git says is live. Returns the check and its sha."""
    label = f"{kind} {ref.namespace}/{ref.name}"
    st = flux.status(obj)
    shown = (st.get("artifact") or {}).get("revision", "") if kind == "GitRepository" \
        else st.get("lastAppliedRevision", "")
    parsed = flux.parse_revision(shown)
    sha = parsed.hex.lower() if parsed is not None and parsed.algorithm == "sha1" else ""
    ready = flux.condition(obj)
    problem = None
    if flux.suspended(obj):
        problem = "suspended"
    elif ready is None or not ready.true:
        problem = f"{ready.reason}: {ready.message}" if ready else "no Ready condition"
    elif not sha:
        problem = f"reports no git revision ({shown or 'none'})"
    elif mismatch is not None:
        problem = mismatch(sha)
    evidence = [f"revision {shown}"] if shown else []
    name = "flux-source" if kind == "GitRepository" else "flux"
    if problem:
        return Check(name, False, f"{label}: {problem}", evidence), sha
    return Check(name, True, f"{label}: Ready at {shown}", evidence), sha


def _reconciling(ks: Mapping[str, Any]) -> bool:
    """Flux is in the middle of a reconcile, not failing: Reconciling=True with Ready=Unknown
    (kustomize-controller marks Ready Unknown while it fetches, applies and health-checks, and its
    health check reads the objects only every 5 s, fluxcd/pkg ssa/manager_wait.go), or a canceled
    health check it has re-queued. One look judges the rollout, pods and HTTP instead."""
    ready, reconciling = flux.condition(ks), flux.condition(ks, "Reconciling")
    if reconciling is None or not reconciling.true or ready is None:
        return False
    return ready.status == "Unknown" or (ready.false and ready.reason in flux.RETRIED_BY_FLUX)


def _selector(deployment: Mapping[str, Any]) -> str:
    labels = (((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _full_sha(revision: str) -> str:
    if not isinstance(revision, str) or not is_full_sha(revision.lower()):
        raise InputError(f"revision {revision!r} is not a full 40-character git commit SHA",
                         hint="pass the deploy commit's full SHA (git rev-parse HEAD)")
    return revision.lower()


def _artifact_sha(repo: Mapping[str, Any]) -> str | None:
    """The full commit SHA of a GitRepository's current artifact, if it has one."""
    parsed = flux.parse_revision(((repo.get("status") or {}).get("artifact") or {}).get("revision", ""))
    return parsed.hex.lower() if parsed is not None and parsed.algorithm == "sha1" else None
