"""The kubelet: runs each pod's containers as real containers on the test Docker engine.

Every pod gets its own loopback address (127.X.Y.Z from the simulator's block) as
its pod IP, so old and new pods of a rollout can listen on the same port at once,
as they would with a pod network. The container uses host networking and learns its
address from the downward API (`valueFrom.fieldRef: status.podIP`), or from an env
value of `0.0.0.0`, which the kubelet replaces with the pod IP: in a real pod the
wildcard address means the pod's own interfaces, and here it must not mean the host's.

What the API shows follows the kubelet's own timeline (kubernetes/kubernetes
pkg/kubelet/kuberuntime/kuberuntime_manager.go doBackOff, pkg/kubelet/images/
image_manager.go, client-go util/flowcontrol/backoff.go):

* an exited container shows `state.terminated` for one sync; the first exit is then
  restarted at once (restartCount +1 at that restart, `lastState.terminated` holds
  the exit); from the second exit on it waits in CrashLoopBackOff
  ("back-off 10s restarting failed container=C pod=P_NS(UID)") for 10 s doubling,
  capped; an exit more than 2 x the cap after the last restart (10 min on a real
  node) forgets the back-off: restarted at once, next back-off from the start;
* a failed pull shows ErrImagePull with the runtime's message, then
  ImagePullBackOff ("Back-off pulling image \"I\": ErrImagePull: <last error>") until
  its own back-off (same 10 s doubling and cap) is over, then pulls again; a pull
  that succeeds starts the container.

The sandbox scales the kubelet's clock down: `restart_backoff` stands for the
kubelet's 10 s (backOffPeriod in pkg/kubelet/kubelet.go) and `max_backoff` for its
300 s (MaxContainerBackOff); the sequence of states and counters is unscaled.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from gitopsctl.sandbox.lab.kube.controllers import set_condition, terminating
from gitopsctl.sandbox.lab.kube.serviceenv import service_environment
from gitopsctl.sandbox.lab.kube.store import PODS, Store, now_rfc3339

LABEL = "gitopsctl.sandbox.lab/kube-sim"
_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|K|M|G|k)?$")
_UNITS = {None: 1, "K": 1000, "k": 1000, "M": 1000**2, "G": 1000**3, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}


def memory_bytes(quantity: Any) -> int | None:
    m = _QUANTITY.match(str(quantity or ""))
    return int(float(m.group(1)) * _UNITS[m.group(2)]) if m else None


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """repository, tag, digest of an image reference (tag None when absent)."""
    digest = None
    if "@" in image:
        image, digest = image.split("@", 1)
    repo, tag = image, None
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = image.rsplit(":", 1)
    return repo, tag, digest


class Backoff:
    """One key of client-go's flowcontrol.Backoff (util/flowcontrol/backoff.go), on time.monotonic().

    The kubelet keeps one per container for restarts and one per pod and image for pulls.
    """

    def __init__(self, initial: float, maximum: float):
        self.initial, self.maximum = initial, maximum
        self.delay: float | None = None  # no entry yet
        self.last_update = 0.0

    def _expired(self, event_time: float) -> bool:
        # Stable for twice the cap: start over (hasExpired).
        return event_time - self.last_update > 2 * self.maximum

    def next(self, event_time: float, now: float) -> None:
        if self.delay is None or self._expired(event_time):
            self.delay = self.initial
        else:
            self.delay = min(self.delay * 2, self.maximum)
        self.last_update = now

    def in_backoff_since(self, event_time: float, now: float) -> bool:
        if self.delay is None or self._expired(event_time):
            return False
        return now - event_time < self.delay

    def in_backoff_since_update(self, now: float) -> bool:
        if self.delay is None or self._expired(now):
            return False
        return now - self.last_update < self.delay


def go_duration(seconds: float) -> str:
    """A duration as Go's time.Duration.String() prints it (10s, 2m40s, 5m0s, 500ms)."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms" if seconds else "0s"
    minutes, rest = divmod(round(seconds, 9), 60)
    hours, minutes = divmod(int(minutes), 60)
    text = f"{rest:g}s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    return f"{minutes}m{text}" if minutes else text


@dataclass
class _Probe:
    spec: dict
    successes: int = 0
    failures: int = 0
    next_at: float = 0.0

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def schedule(self, now: float) -> None:
        self.next_at = now + float(self.spec.get("periodSeconds", 10))


@dataclass
class _Container:
    spec: dict
    docker: Any = None  # docker Container while one exists
    docker_id: str = ""
    image_id: str = ""
    state: dict = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict = field(default_factory=dict)
    restarts: int = 0
    ready: bool = False
    next_try: float = 0.0  # for errors outside the kubelet's two back-offs (config, runtime)
    crash_backoff: Backoff | None = None
    pull_backoff: Backoff | None = None
    last_pull_error: str = ""
    exited_at: float | None = None  # the exit that waits for the restart decision
    exit: dict = field(default_factory=dict)  # how the last run ended (lastState.terminated)
    started_at: float = 0.0
    readiness: _Probe | None = None
    liveness: _Probe | None = None
    logs: str = ""  # output of the current run, refreshed while it runs
    previous_logs: str | None = None

    @property
    def name(self) -> str:
        return self.spec["name"]


class PodWorker(threading.Thread):
    """Drives one pod: pulls, starts, probes and restarts its containers until the pod is deleted."""

    def __init__(self, kubelet: "Kubelet", namespace: str, name: str, pod_ip: str, uid: str = ""):
        super().__init__(name=f"kubelet-{name}", daemon=True)
        self.kubelet, self.namespace, self.pod_name, self.pod_ip = kubelet, namespace, name, pod_ip
        self.uid = uid  # the real kubelet keys its pod workers by UID (pkg/kubelet/pod_workers.go)
        self.containers: list[_Container] = []
        self._halt = threading.Event()
        self._seq = 0

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # noqa: BLE001 - a kubelet bug must show in the simulator's errors
            self.kubelet.errors.append(f"pod {self.namespace}/{self.pod_name}: {type(exc).__name__}: {exc}")
        finally:
            self._remove_all()

    def _run(self) -> None:
        pod = self.kubelet.store.find(PODS, self.namespace, self.pod_name)
        if pod is None:
            return
        for spec in (pod.get("spec") or {}).get("containers") or []:
            c = _Container(spec)
            if spec.get("readinessProbe"):
                c.readiness = _Probe(spec["readinessProbe"])
            if spec.get("livenessProbe"):
                c.liveness = _Probe(spec["livenessProbe"])
            self.containers.append(c)
        self._publish(pod_started=True)
        while not self._halt.is_set():
            pod = self.kubelet.store.find(PODS, self.namespace, self.pod_name)
            if pod is None:
                return
            if terminating(pod):
                self._remove_all()
                try:
                    self.kubelet.store.delete(PODS, self.namespace, self.pod_name)
                except Exception:  # noqa: BLE001 - already gone
                    pass
                return
            now = time.monotonic()
            for c in self.containers:
                self._step(pod, c, now)
            self._publish()
            self._halt.wait(0.1)

    # -- one container, one step -------------------------------------------------

    def _step(self, pod: dict, c: _Container, now: float) -> None:
        if c.docker is None:
            if c.exited_at is not None:
                self._restart_or_back_off(pod, c, now)
            elif now >= c.next_try:
                self._start(pod, c)
            return
        try:
            c.docker.reload()
        except Exception:  # noqa: BLE001 - the container vanished under us: treat as exited
            self._exited(c, {"ExitCode": 137, "OOMKilled": False, "Error": "container disappeared"})
            return
        state = c.docker.attrs.get("State") or {}
        if state.get("Status") in ("exited", "dead"):
            self._exited(c, state)
            return
        self._refresh_logs(c)
        liveness_delay = float((c.liveness.spec if c.liveness else {}).get("initialDelaySeconds", 0))
        if c.liveness and c.liveness.due(now) and now - c.started_at >= liveness_delay:
            c.liveness.schedule(now)
            if not self._probe(c.liveness.spec, c):
                c.liveness.failures += 1
                if c.liveness.failures >= int(c.liveness.spec.get("failureThreshold", 3)):
                    c.liveness.failures = 0
                    try:
                        c.docker.kill()
                    except Exception:  # noqa: BLE001
                        pass
            else:
                c.liveness.failures = 0
        if c.readiness is None:
            c.ready = True
        elif c.readiness.due(now) and now - c.started_at >= float(c.readiness.spec.get("initialDelaySeconds", 0)):
            c.readiness.schedule(now)
            if self._probe(c.readiness.spec, c):
                c.readiness.successes += 1
                c.readiness.failures = 0
                if c.readiness.successes >= int(c.readiness.spec.get("successThreshold", 1)):
                    c.ready = True
            else:
                c.readiness.failures += 1
                c.readiness.successes = 0
                if c.readiness.failures >= int(c.readiness.spec.get("failureThreshold", 3)) or not c.ready:
                    c.ready = False

    def _restart_or_back_off(self, pod: dict, c: _Container, now: float) -> None:
        """doBackOff in kuberuntime_manager.go: the exit's finish time against the back-off."""
        kubelet = self.kubelet
        if c.crash_backoff is None:
            c.crash_backoff = Backoff(kubelet.restart_backoff, kubelet.max_backoff)
        c.last_state = {"terminated": c.exit}  # a waiting container shows its last end (kubelet_pods.go)
        if c.crash_backoff.in_backoff_since(c.exited_at, now):
            uid = pod["metadata"].get("uid", "")
            c.state = {"waiting": {"reason": "CrashLoopBackOff",
                                   "message": f"back-off {go_duration(c.crash_backoff.delay)} restarting failed "
                                              f"container={c.name} pod={self.pod_name}_{self.namespace}({uid})"}}
            return
        c.crash_backoff.next(c.exited_at, now)
        if self._start(pod, c):
            c.exited_at = None

    def _start(self, pod: dict, c: _Container) -> bool:
        """Pull if needed and start the container; False when it did not start (the state says why)."""
        import docker.errors

        kubelet = self.kubelet
        image = c.spec.get("image", "")
        try:
            env = self._environment(pod, c.spec)
        except ValueError as exc:
            c.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}}
            c.next_try = time.monotonic() + kubelet.restart_backoff
            return False
        try:
            c.image_id = kubelet.local_image(image, c.spec.get("imagePullPolicy")) or ""
        except ValueError as exc:
            reason = "ErrImageNeverPull" if "Never" in str(exc) else "InvalidImageName"
            c.state = {"waiting": {"reason": reason, "message": str(exc)}}
            c.next_try = time.monotonic() + kubelet.restart_backoff
            return False
        if not c.image_id and not self._pull(c, image):
            return False
        self._seq += 1
        limits = (c.spec.get("resources") or {}).get("limits") or {}
        kwargs: dict[str, Any] = {
            "name": f"k8s-{kubelet.sim_id}-{self.pod_name}-{c.name}-{self._seq}"[:120],
            "environment": env, "network_mode": "host", "detach": True,
            "labels": {LABEL: kubelet.sim_id, f"{LABEL}.pod": f"{self.namespace}/{self.pod_name}"},
        }
        if c.spec.get("command"):
            kwargs["entrypoint"] = c.spec["command"]
        if c.spec.get("args"):
            kwargs["command"] = c.spec["args"]
        if c.spec.get("workingDir"):
            kwargs["working_dir"] = c.spec["workingDir"]
        mem = memory_bytes(limits.get("memory"))
        if mem:
            kwargs["mem_limit"] = mem
            kwargs["memswap_limit"] = mem
        try:
            container = kubelet.docker.containers.create(image, **kwargs)
            container.start()
        except docker.errors.APIError as exc:
            c.state = {"waiting": {"reason": "RunContainerError", "message": str(exc.explanation or exc)}}
            c.next_try = time.monotonic() + kubelet.restart_backoff
            return False
        if c.exited_at is not None:
            # The restart count lives on the new container (one more than the dead one's), and the
            # dead one's end becomes lastState (kuberuntime_container.go, kubelet_pods.go).
            c.restarts += 1
        c.docker, c.docker_id = container, container.id
        c.started_at = time.monotonic()
        c.logs = ""
        c.ready = False
        for probe in (c.readiness, c.liveness):
            if probe is not None:
                probe.successes = probe.failures = 0
                probe.next_at = c.started_at
        c.state = {"running": {"startedAt": now_rfc3339()}}
        return True

    def _pull(self, c: _Container, image: str) -> bool:
        """pullImage in image_manager.go: back-off per pod and image, the last error kept for its message."""
        import docker.errors

        kubelet = self.kubelet
        now = time.monotonic()
        if c.pull_backoff is None:
            c.pull_backoff = Backoff(kubelet.restart_backoff, kubelet.max_backoff)
        if c.pull_backoff.in_backoff_since_update(now):
            msg = f'Back-off pulling image "{image}"'
            c.state = {"waiting": {"reason": "ImagePullBackOff",
                                   "message": f"{msg}: {c.last_pull_error}" if c.last_pull_error else msg}}
            return False
        c.last_pull_error = ""
        try:
            c.image_id = kubelet.pull(image)
        except (docker.errors.APIError, docker.errors.ImageNotFound, OSError) as exc:
            c.pull_backoff.next(time.monotonic(), time.monotonic())
            explanation = getattr(exc, "explanation", None) or str(exc)
            msg = f'failed to pull and unpack image "{image}": {explanation}'
            c.last_pull_error = f"ErrImagePull: {msg}"
            c.state = {"waiting": {"reason": "ErrImagePull", "message": msg}}
            return False
        return True

    def _exited(self, c: _Container, state: dict) -> None:
        self._refresh_logs(c)
        oom = bool(state.get("OOMKilled"))
        code = int(state.get("ExitCode", 0) or 0)
        reason = "OOMKilled" if oom else ("Completed" if code == 0 else "Error")
        started = (c.state.get("running") or {}).get("startedAt", now_rfc3339())
        c.exit = {"exitCode": code, "reason": reason, "startedAt": started,
                  "finishedAt": now_rfc3339(), "containerID": f"docker://{c.docker_id}"}
        c.previous_logs = c.logs
        try:
            c.docker.remove(force=True)
        except Exception:  # noqa: BLE001 - best effort; stop() sweeps by label
            pass
        c.docker = None
        c.ready = False
        # Shown until the next sync decides (restart at once or back off); lastState still
        # holds the run before.
        c.state = {"terminated": c.exit}
        c.exited_at = time.monotonic()

    def _refresh_logs(self, c: _Container) -> None:
        if c.docker is None:
            return
        try:
            c.logs = c.docker.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        except Exception:  # noqa: BLE001 - logs are evidence, never a reason to fail
            pass

    def _probe(self, probe: dict, c: _Container) -> bool:
        http = probe.get("httpGet")
        if not http:
            return True  # exec and tcpSocket probes are not simulated: they pass
        port = http.get("port")
        if isinstance(port, str) and not port.isdigit():
            port = next((p.get("containerPort") for p in c.spec.get("ports") or [] if p.get("name") == port), None)
        if port is None:
            return False
        host = http.get("host") or self.pod_ip
        url = f"{(http.get('scheme') or 'HTTP').lower()}://{host}:{int(port)}{http.get('path') or '/'}"
        timeout = float(probe.get("timeoutSeconds", 1))
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(urllib.request.Request(url, headers={"User-Agent": "kube-probe/1.30"}),
                             timeout=timeout) as resp:
                return 200 <= resp.status < 400
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def _environment(self, pod: dict, spec: dict) -> dict[str, str]:
        fields = {"status.podIP": self.pod_ip, "status.hostIP": "127.0.0.1",
                  "metadata.name": self.pod_name, "metadata.namespace": self.namespace,
                  "spec.nodeName": self.kubelet.node_name}
        # The Services of this moment first: the container's own env overrides them.
        env: dict[str, str] = service_environment(self.kubelet.store, pod)
        for item in spec.get("env") or []:
            name = item.get("name")
            if "value" in item:
                # Host networking has no per-pod namespace: "all addresses" of a pod is its own IP.
                env[name] = self.pod_ip if item["value"] == "0.0.0.0" else str(item["value"])
                continue
            source = item.get("valueFrom") or {}
            path = (source.get("fieldRef") or {}).get("fieldPath")
            if path in fields:
                env[name] = fields[path]
            elif source.get("secretKeyRef") or source.get("configMapKeyRef"):
                ref = source.get("secretKeyRef") or source.get("configMapKeyRef")
                what = "secret" if source.get("secretKeyRef") else "configmap"
                raise ValueError(f'{what} "{ref.get("name")}" not found')
            else:
                raise ValueError(f"unsupported valueFrom for env {name}")
        return env

    # -- status --------------------------------------------------------------------

    def _publish(self, pod_started: bool = False) -> None:
        statuses = []
        for c in self.containers:
            statuses.append({"name": c.name, "image": c.spec.get("image", ""), "imageID": c.image_id,
                             "containerID": f"docker://{c.docker_id}" if c.docker_id else "",
                             "ready": c.ready, "started": c.docker is not None, "restartCount": c.restarts,
                             "state": c.state, "lastState": c.last_state})
        all_ready = bool(self.containers) and all(c.ready for c in self.containers)
        any_ran = any(c.docker is not None or c.exit for c in self.containers)
        ready = "True" if all_ready else "False"

        def change(pod: dict) -> None:
            st = pod.setdefault("status", {})
            if pod_started:
                st["startTime"] = now_rfc3339()
            pod.setdefault("spec", {})["nodeName"] = self.kubelet.node_name
            st.update(phase="Running" if any_ran else "Pending", podIP=self.pod_ip,
                      podIPs=[{"ip": self.pod_ip}], hostIP="127.0.0.1", containerStatuses=statuses)
            conds = st.setdefault("conditions", [])
            set_condition(conds, "PodScheduled", "True", "", "")
            set_condition(conds, "Initialized", "True", "", "")
            set_condition(conds, "ContainersReady", ready, "" if all_ready else "ContainersNotReady", "")
            set_condition(conds, "Ready", ready, "" if all_ready else "ContainersNotReady", "")

        before = self.kubelet.store.find(PODS, self.namespace, self.pod_name)
        after = self.kubelet.store.mutate(PODS, self.namespace, self.pod_name, change)
        if before is not None and after is not None:
            self.kubelet.record_transitions(before, after)

    def _remove_all(self) -> None:
        for c in self.containers:
            if c.docker is not None:
                try:
                    c.docker.remove(force=True)
                except Exception:  # noqa: BLE001
                    pass
                c.docker = None

    def logs(self, container: str | None, previous: bool) -> str | None:
        c = next((c for c in self.containers if container in (None, c.name)), None)
        if c is None:
            return None
        if previous:
            return c.previous_logs
        self._refresh_logs(c)
        if c.docker is None and c.previous_logs is not None:
            return c.previous_logs  # waiting to restart: the last run is what there is
        return c.logs if (c.docker is not None or c.logs) else None


@dataclass(frozen=True)
class Transition:
    """When the API first showed a container waiting or terminated reason (for detection-latency figures)."""

    at: float  # time.time()
    namespace: str
    pod: str
    container: str
    reason: str
    restarts: int
    state: str = "waiting"  # or "terminated" (reason Error, Completed, OOMKilled)


class Kubelet:
    def __init__(self, store: Store, docker_client: Any, *, sim_id: str, pod_network: str,
                 registry_auth: dict[str, dict[str, str]] | None = None, restart_backoff: float = 0.5,
                 max_backoff: float = 5.0, node_name: str = "emulator-node", errors: list[str] | None = None):
        self.store = store
        self.errors = errors if errors is not None else []
        self.docker = docker_client
        self.sim_id = sim_id
        self.pod_network = pod_network  # "127.X.Y." prefix
        self.registry_auth = registry_auth or {}
        self.restart_backoff = restart_backoff
        self.max_backoff = max_backoff
        self.node_name = node_name
        self.workers: dict[tuple[str, str], PodWorker] = {}
        self.transitions: list[Transition] = []
        self._next_ip = 2
        self._pull_lock = threading.Lock()
        self._lock = threading.Lock()

    def tick(self) -> None:
        pods, _ = self.store.list(PODS)
        live = set()
        for pod in pods:
            key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
            live.add(key)
            worker = self.workers.get(key)
            if worker is not None and not worker.is_alive() and worker.uid != pod["metadata"].get("uid"):
                del self.workers[key]  # a new pod under a gone pod's name (a StatefulSet's): its own worker
            if key not in self.workers:
                if terminating(pod):
                    try:
                        self.store.delete(PODS, *key)
                    except Exception:  # noqa: BLE001
                        pass
                    continue
                worker = PodWorker(self, key[0], key[1], self._allocate_ip(), pod["metadata"].get("uid", ""))
                self.workers[key] = worker
                worker.start()
        for key in [k for k, w in self.workers.items() if k not in live and not w.is_alive()]:
            del self.workers[key]

    def _allocate_ip(self) -> str:
        ip = f"{self.pod_network}{self._next_ip}"
        self._next_ip = self._next_ip + 1 if self._next_ip < 199 else 2  # .200 up: cluster IPs
        return ip

    def local_image(self, image: str, policy: str | None) -> str | None:
        """The id of `image` if the pull policy lets the kubelet use it as is; None when it must pull.

        IfNotPresent is the default for tagged images, Always for `latest` or no tag
        (shouldPullImage in image_manager.go). Raises ValueError for a bad name or a
        missing image under Never.
        """
        import docker.errors

        repo, tag, digest = split_image(image)
        if not repo:
            raise ValueError(f'Failed to apply default image tag "{image}": invalid reference format')
        always = policy == "Always" or (policy is None and tag in (None, "latest") and digest is None)
        if not always:
            try:
                return self.docker.images.get(image).id
            except docker.errors.ImageNotFound:
                pass
        if policy == "Never":
            raise ValueError(f'Container image "{image}" is not present with pull policy of Never')
        return None

    def pull(self, image: str) -> str:
        """Pull `image` with the registry credentials given to the emulator; its image id."""
        repo, tag, digest = split_image(image)
        registry = repo.split("/", 1)[0] if "/" in repo else ""
        with self._pull_lock:  # one pull at a time, like the kubelet's serialized pulls
            self.docker.api.pull(repo, tag=digest or tag or "latest", auth_config=self.registry_auth.get(registry))
            return self.docker.images.get(image).id

    def logs(self, namespace: str, pod: str, container: str | None, previous: bool) -> str | None:
        worker = self.workers.get((namespace, pod))
        return worker.logs(container, previous) if worker else None

    def record_transitions(self, before: dict, after: dict) -> None:
        def shown(pod: dict) -> dict[str, tuple[str, str, int]]:
            out = {}
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                for kind in ("waiting", "terminated"):
                    reason = ((cs.get("state") or {}).get(kind) or {}).get("reason")
                    if reason:
                        out[cs["name"]] = (kind, reason, cs.get("restartCount", 0))
            return out

        old, new = shown(before), shown(after)
        for name, (kind, reason, restarts) in new.items():
            if old.get(name, ("", "", 0))[:2] != (kind, reason):
                with self._lock:
                    self.transitions.append(Transition(time.time(), after["metadata"]["namespace"],
                                                       after["metadata"]["name"], name, reason, restarts, kind))

    def stop(self) -> None:
        for worker in list(self.workers.values()):
            worker.stop()
        for worker in list(self.workers.values()):
            worker.join(timeout=10)
        self.workers.clear()
        try:
            for container in self.docker.containers.list(all=True, filters={"label": f"{LABEL}={self.sim_id}"}):
                try:
                    container.remove(force=True)
                except Exception:  # noqa: BLE001
                    pass
        except Exception:  # noqa: BLE001 - the engine may be gone already
            pass
