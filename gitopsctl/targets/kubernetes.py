"""A Kubernetes target: Flux on a cluster, judged by gitopsctl itself, for one service.

A service names its workloads (Deployments, StatefulSets, DaemonSets) and its health checks
(http, tcp; none at all is fine); its target names the GitRepository and the Kustomizations.

apply()         does what `flux reconcile kustomization --with-source` does (request a
                reconcile of the GitRepository, then of each Kustomization in order) and
                waits until each has handled the request at the pushed commit.
wait_healthy()  follows every workload's rollout and watches its new pods (kubewait.py), so
                a crash loop is reported as soon as the API shows it instead of when Flux's
                health check or the progress deadline runs out; then the health checks must
                pass several times in a row.
check_health()  one look, no waiting.
observe()       verify's read-only wait: the same looks, repeated until healthy at the
                revision git says is live (or the deadline); it never writes to the API,
                not even the reconcile-request annotation.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

from gitopsctl import flux
from gitopsctl.config import Config, HealthCheck, KubernetesTarget, ObjectRef, Workload
from gitopsctl.errors import CheckFailed, ConfigError, InputError
from gitopsctl.health import Check, HealthReport
from gitopsctl.repo import is_full_sha
from gitopsctl.targets import stop_requested
from gitopsctl.targets.kubeapi import KubeApi, KubeApiError, resolve_kubeconfig
from gitopsctl.targets.kubewait import SAMPLE_INTERVAL, Waiter, current_pods_selector, workload_label
from gitopsctl.targets.probes import PROBED_HERE, run_check
from gitopsctl.targets.rollout import PodProblem, pod_problem, pod_summary, workload_rollout

LOG_TAIL_LINES = 20
POLL_INTERVAL = 0.25
# A reconcile the controller starts at once ends in tens of milliseconds on an idle
# cluster: the first looks come quickly and space out to POLL_INTERVAL, a few GETs more.
FIRST_POLL = 0.03
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
    """The Kubernetes half of a deploy, for one service."""

    def __init__(self, settings: KubernetesTarget, *, workloads: tuple[Workload, ...] | None = None,
                 health: tuple[HealthCheck, ...] | None = None, name: str = "frontend", branch: str = "main",
                 http_timeout: float = 5.0, healthy_samples: int = 3, kube: KubeApi | None = None,
                 sample_interval: float = SAMPLE_INTERVAL,
                 environ: Mapping[str, str] | None = None, progress: Progress | None = None,
                 contains: Callable[[str, str], bool] | None = None, target_name: str = "kubernetes",
                 applies: dict | None = None):
        import os

        self.name = name
        self.target_name = target_name
        self.settings = settings
        self.kustomizations = tuple(settings.kustomizations)
        self.workloads = tuple(workloads or ())
        self.health = tuple(health or ())
        for check in self.health:
            if check.kind not in PROBED_HERE:
                raise ConfigError(f"service {name}: a {check.kind} health check needs a VM target",
                                  hint="on Kubernetes use an http or tcp check, or none (the workloads' "
                                       "readiness is then the verdict)")
        self.branch = branch
        self.http_timeout = http_timeout
        self.healthy_samples = healthy_samples
        self.sample_interval = sample_interval
        self.progress = progress or _quiet
        self._kube = kube
        self._environ = environ if environ is not None else os.environ
        # What apply() did is the target's, not the service's: services of one stage group on
        # this target are applied once and judged against that one reconcile request.
        self._applies = applies if applies is not None else {}
        # contains(newer, ours): does commit `newer` include `ours`? When the branch moved on
        # after our push (another pipeline, a developer), Flux applies the newer commit, which
        # still carries our change; without this hook only our exact commit counts.
        self.contains = contains
        self._moved: dict[str, str] = self._applies.setdefault("moved", {})  # our sha -> the newer sha Flux applied

    @property
    def _applied(self) -> tuple[str, str] | None:
        """(sha, token) of the last apply() of this target, by any of its services."""
        return self._applies.get("last")

    @classmethod
    def from_config(cls, config: Config, service: str, *, progress: Progress | None = None,
                    environ: Mapping[str, str] | None = None,
                    contains: Callable[[str, str], bool] | None = None,
                    applies: dict | None = None) -> "KubeTarget":
        settings = config.target_of(service)
        svc = config.service(service)
        if settings.kind != "kubernetes":
            raise ConfigError(f"service {service} runs on target {svc.target!r}, a {settings.kind} target, "
                              "not a Kubernetes one", hint=f"check services.{service}.target in {config.path}")
        return cls(settings, workloads=svc.workloads, health=svc.health, name=service, branch=config.git.branch,
                   http_timeout=config.timeouts.http, healthy_samples=config.timeouts.healthy_samples,
                   sample_interval=config.timeouts.sample_interval,
                   environ=environ, progress=progress, contains=contains, target_name=svc.target,
                   applies=applies)

    @property
    def kube(self) -> KubeApi:
        if self._kube is None:
            path = resolve_kubeconfig(self.settings.kubeconfig, self._environ, target=self.target_name)
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
        for ks in self.kustomizations:
            # In order: a later one may depend on an earlier one (spec.dependsOn).
            sha = self._reconcile(flux.KUSTOMIZE_GROUP, flux.KUSTOMIZE_VERSION, flux.KUSTOMIZATIONS, "Kustomization",
                                  ks, sha, token, deadline, started, flux.kustomization_verdict)
        self._applies["last"] = (sha, token)

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
            poll = FIRST_POLL
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
                if stop_requested():
                    self._fail_reconcile(label, "Stopped", "the apply's verdict is no longer needed",
                                         want, started, stopped=True)
                if time.monotonic() >= deadline:
                    self._fail_reconcile(label, "Timeout",
                                         f"{label} did not reach {want} within {time.monotonic() - started:.0f}s; "
                                         f"last state: {verdict.reason} {verdict.message}".strip(), want, started)
                time.sleep(poll)
                poll = min(POLL_INTERVAL, poll * 1.5)
        except KubeApiError as exc:
            self._fail_reconcile(label, "APIError", exc.message, want, started, hint=exc.hint)
        raise AssertionError("unreachable")  # pragma: no cover

    def _request(self, group: str, version: str, plural: str, ref: ObjectRef, token: str, deadline: float) -> None:
        # A merge patch of one annotation needs no resourceVersion; a 409 is retried by the client layer.
        body = {"metadata": {"annotations": {flux.REQUESTED_AT: token}}}
        self.kube.patch_custom(group, version, plural, ref.namespace, ref.name, body, deadline=deadline)

    def _fail_reconcile(self, label: str, reason: str, message: str, want: str, started: float,
                        hint: str | None = None, stopped: bool = False) -> None:
        report = HealthReport(target=self.name, healthy=False,
                              reason=f"{self.name} {label.split()[0]} {reason}",
                              revision=want, elapsed=time.monotonic() - started,
                              checks=[Check("flux", False, f"{label}: {reason}: {message}".rstrip(": "),
                                            [message] if message else [])],
                              details={"stopped": True} if stopped else {})
        exc = ReconcileFailed(report)
        if hint:
            exc.hint = hint
        raise exc

    # -- wait_healthy: rollouts, pods, health checks ---------------------------------

    def wait_healthy(self, revision: str, deadline: float) -> HealthReport:
        sha = _full_sha(revision)
        sha = self._moved.get(sha, sha)
        watch = Waiter(self, sha, deadline)
        try:
            return watch.run()
        finally:
            watch.stop()

    def check_health(self) -> HealthReport:
        started = time.monotonic()
        checks: list[Check] = []
        report = HealthReport(target=self.name, healthy=False)
        deadline = started + 20
        try:
            for ks_ref in self.kustomizations:
                ks = self.kube.get_custom(flux.KUSTOMIZE_GROUP, flux.KUSTOMIZE_VERSION, flux.KUSTOMIZATIONS,
                                          ks_ref.namespace, ks_ref.name, deadline=deadline)
                ready = flux.condition(ks)
                applied = flux.status(ks).get("lastAppliedRevision", "")
                report.revision = report.revision or applied or None
                ok = (bool(ready and ready.true) or _reconciling(ks)) and not flux.suspended(ks)
                checks.append(Check("flux", ok,
                                    f"Kustomization {ks_ref.namespace}/{ks_ref.name}: "
                                    + (f"{ready.reason}: {ready.message}" if ready else "no Ready condition")
                                    + (" (suspended)" if flux.suspended(ks) else ""),
                                    [f"lastAppliedRevision {applied}"] if applied else []))
            for workload in self.workloads:
                checks += self._look_at_workload(workload, deadline)[0]
        except KubeApiError as exc:
            checks.append(Check("kubernetes-api", False, exc.message))
        self._judge(report, checks)
        report.elapsed = time.monotonic() - started
        return report

    def _look_at_workload(self, workload: Workload, deadline: float,
                          with_logs: bool = False) -> tuple[list[Check], bool]:
        """The rollout and pods checks of one workload, and whether what they show is fatal."""
        obj = self.kube.get_workload(workload.kind, workload.namespace, workload.name, deadline=deadline)
        rollout = workload_rollout(workload.kind, obj)
        label = workload_label(workload)
        pods = self._current_pods(workload, obj, deadline)
        problems = [p for p in (pod_problem(pod) for pod in pods) if p]
        evidence = [pod_summary(p) for p in pods]
        if problems and with_logs:
            evidence += self.logs(workload.namespace, problems[0], deadline)
        return [Check("rollout", rollout.complete, f"{label}: {rollout.message}"),
                Check("pods", not problems,
                      problems[0].summary() if problems else f"{label}: {len(pods)} pods without problems",
                      evidence)], rollout.failed or bool(problems)

    def _judge(self, report: HealthReport, checks: list[Check]) -> None:
        """Add the service's health checks to `checks` and set the verdict: healthy only if all pass."""
        checks += [run_check(check, self.http_timeout) for check in self.health]
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
            if fatal or time.monotonic() + self.sample_interval > deadline:
                if report.healthy:  # healthy, but not for long enough to count
                    report.healthy = False
                    report.reason = (f"{self.name} healthy in only {in_row}/{self.healthy_samples} "
                                     "looks before the deadline")
                break
            time.sleep(self.sample_interval)
        report.elapsed = time.monotonic() - started
        return report

    def _observe_once(self, deadline: float,
                      mismatch: Callable[[str], str | None] | None) -> tuple[HealthReport, bool]:
        checks: list[Check] = []
        fatal = False
        report = HealthReport(target=self.name, healthy=False)
        look_deadline = min(deadline, time.monotonic() + 20)
        looks = [("GitRepository", flux.SOURCE_GROUP, flux.SOURCE_VERSION, flux.GIT_REPOSITORIES,
                  self.settings.git_repository)] + [
            ("Kustomization", flux.KUSTOMIZE_GROUP, flux.KUSTOMIZE_VERSION, flux.KUSTOMIZATIONS, ref)
            for ref in self.kustomizations]
        try:
            for kind, group, version, plural, ref in looks:
                obj = self.kube.get_custom(group, version, plural, ref.namespace, ref.name,
                                           deadline=look_deadline)
                check, revision = _flux_look(kind, ref, obj, mismatch)
                checks.append(check)
                fatal = fatal or flux.suspended(obj)
                if kind == "Kustomization":
                    report.revision = report.revision or revision or None
            for workload in self.workloads:
                workload_checks, workload_fatal = self._look_at_workload(workload, look_deadline, with_logs=True)
                checks += workload_checks
                fatal = fatal or workload_fatal
        except KubeApiError as exc:
            checks.append(Check("kubernetes-api", False, exc.message))
        self._judge(report, checks)
        return report, fatal

    def _current_pods(self, workload: Workload, obj: Mapping[str, Any], deadline: float) -> list[dict]:
        """The pods of the workload's newest release (all of them before it has one)."""
        selector = current_pods_selector(self.kube, workload, dict(obj), deadline)
        if selector is None:
            return []
        pods, _ = self.kube.list_pods(obj["metadata"]["namespace"], selector, deadline=deadline)
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


def _full_sha(revision: str) -> str:
    if not isinstance(revision, str) or not is_full_sha(revision.lower()):
        raise InputError(f"revision {revision!r} is not a full 40-character git commit SHA",
                         hint="pass the deploy commit's full SHA (git rev-parse HEAD)")
    return revision.lower()


def _artifact_sha(repo: Mapping[str, Any]) -> str | None:
    """The full commit SHA of a GitRepository's current artifact, if it has one."""
    parsed = flux.parse_revision(((repo.get("status") or {}).get("artifact") or {}).get("revision", ""))
    return parsed.hex.lower() if parsed is not None and parsed.algorithm == "sha1" else None
