"""The kubelet: runs each pod's containers as real containers on the test Docker engine.

Every pod gets its own loopback address (127.X.Y.Z from the simulator's block) as
its pod IP, so old and new pods of a rollout can listen on the same port at once,
as they would with a pod network. The container uses host networking and learns its
address from the downward API (`valueFrom.fieldRef: status.podIP`), or from an env
value of `0.0.0.0`, which the kubelet replaces with the pod IP: in a real pod the
wildcard address means the pod's own interfaces, and here it must not mean the host's.

What the API then shows is what a kubelet would report: ContainerCreating while
pulling, ErrImagePull / ImagePullBackOff when the pull fails, Running with Ready from
the readinessProbe, CrashLoopBackOff with a climbing restartCount and
lastState.terminated (exit code, reason, OOMKilled when docker says so) when the
container keeps exiting, a restart when the livenessProbe fails. Restart backoff
starts at `restart_backoff` seconds and doubles (capped), shortened from the real 10 s.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from gitopsctl.harness.kube.controllers import set_condition, terminating
from gitopsctl.harness.kube.store import PODS, Store, now_rfc3339

LABEL = "gitopsctl.harness/kube-sim"
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
    next_try: float = 0.0
    pull_failures: int = 0
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

    def __init__(self, kubelet: "Kubelet", namespace: str, name: str, pod_ip: str):
        super().__init__(name=f"kubelet-{name}", daemon=True)
        self.kubelet, self.namespace, self.pod_name, self.pod_ip = kubelet, namespace, name, pod_ip
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
            if now >= c.next_try:
                self._start(pod, c)
            elif c.pull_failures and "ErrImagePull" == (c.state.get("waiting") or {}).get("reason"):
                # After reporting the pull error, the kubelet backs off: ImagePullBackOff.
                msg = f'Back-off pulling image "{c.spec.get("image")}"'
                c.state = {"waiting": {"reason": "ImagePullBackOff", "message": msg}}
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

    def _start(self, pod: dict, c: _Container) -> None:
        import docker.errors

        kubelet = self.kubelet
        image = c.spec.get("image", "")
        try:
            env = self._environment(pod, c.spec)
        except ValueError as exc:
            c.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}}
            c.next_try = time.monotonic() + kubelet.restart_backoff
            return
        try:
            c.image_id = kubelet.ensure_image(image, c.spec.get("imagePullPolicy"))
        except (docker.errors.APIError, docker.errors.ImageNotFound, ValueError) as exc:
            c.pull_failures += 1
            explanation = getattr(exc, "explanation", None) or str(exc)
            c.state = {"waiting": {"reason": "ErrImagePull",
                                   "message": f'failed to pull and unpack image "{image}": {explanation}'}}
            c.next_try = time.monotonic() + kubelet.backoff(c.pull_failures)
            return
        c.pull_failures = 0
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
            c.restarts += 1
            c.next_try = time.monotonic() + kubelet.backoff(c.restarts)
            return
        c.docker, c.docker_id = container, container.id
        c.started_at = time.monotonic()
        c.logs = ""
        c.ready = False
        for probe in (c.readiness, c.liveness):
            if probe is not None:
                probe.successes = probe.failures = 0
                probe.next_at = c.started_at
        c.state = {"running": {"startedAt": now_rfc3339()}}

    def _exited(self, c: _Container, state: dict) -> None:
        self._refresh_logs(c)
        oom = bool(state.get("OOMKilled"))
        code = int(state.get("ExitCode", 0) or 0)
        reason = "OOMKilled" if oom else ("Completed" if code == 0 else "Error")
        started = (c.state.get("running") or {}).get("startedAt", now_rfc3339())
        c.last_state = {"terminated": {"exitCode": code, "reason": reason, "startedAt": started,
                                       "finishedAt": now_rfc3339(), "containerID": f"docker://{c.docker_id}"}}
        c.previous_logs = c.logs
        try:
            c.docker.remove(force=True)
        except Exception:  # noqa: BLE001 - best effort; stop() sweeps by label
            pass
        c.docker = None
        c.ready = False
        c.restarts += 1
        delay = self.kubelet.backoff(c.restarts)
        c.next_try = time.monotonic() + delay
        c.state = {"waiting": {"reason": "CrashLoopBackOff",
                               "message": f"back-off {delay:g}s restarting failed container={c.name} "
                                          f"pod={self.pod_name}_{self.namespace}"}}

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
        env: dict[str, str] = {}
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
        any_ran = any(c.docker is not None or c.restarts for c in self.containers)
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
    """When the API first showed a container waiting reason (for detection-latency figures)."""

    at: float  # time.time()
    namespace: str
    pod: str
    container: str
    reason: str
    restarts: int


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

    def backoff(self, attempt: int) -> float:
        return min(self.max_backoff, self.restart_backoff * 2 ** max(0, attempt - 1))

    def tick(self) -> None:
        pods, _ = self.store.list(PODS)
        live = set()
        for pod in pods:
            key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
            live.add(key)
            if key not in self.workers:
                if terminating(pod):
                    try:
                        self.store.delete(PODS, *key)
                    except Exception:  # noqa: BLE001
                        pass
                    continue
                worker = PodWorker(self, key[0], key[1], self._allocate_ip())
                self.workers[key] = worker
                worker.start()
        for key in [k for k, w in self.workers.items() if k not in live and not w.is_alive()]:
            del self.workers[key]

    def _allocate_ip(self) -> str:
        ip = f"{self.pod_network}{self._next_ip}"
        self._next_ip = self._next_ip + 1 if self._next_ip < 199 else 2  # .200 up: cluster IPs
        return ip

    def ensure_image(self, image: str, policy: str | None) -> str:
        """Pull `image` unless present (IfNotPresent, the default for tagged images); its image id."""
        import docker.errors

        repo, tag, digest = split_image(image)
        if not repo:
            raise ValueError(f"invalid image name {image!r}")
        always = policy == "Always" or (policy is None and tag in (None, "latest") and digest is None)
        with self._pull_lock:  # one pull at a time, like the kubelet's serialized pulls
            if not always:
                try:
                    return self.docker.images.get(image).id
                except docker.errors.ImageNotFound:
                    pass
            if policy == "Never":
                raise ValueError(f'image "{image}" is not present with pull policy of Never')
            registry = repo.split("/", 1)[0] if "/" in repo else ""
            auth = self.registry_auth.get(registry)
            self.docker.api.pull(repo, tag=digest or tag or "latest", auth_config=auth)
            return self.docker.images.get(image).id

    def logs(self, namespace: str, pod: str, container: str | None, previous: bool) -> str | None:
        worker = self.workers.get((namespace, pod))
        return worker.logs(container, previous) if worker else None

    def record_transitions(self, before: dict, after: dict) -> None:
        def waiting(pod: dict) -> dict[str, tuple[str, int]]:
            out = {}
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                reason = ((cs.get("state") or {}).get("waiting") or {}).get("reason")
                if reason:
                    out[cs["name"]] = (reason, cs.get("restartCount", 0))
            return out

        old, new = waiting(before), waiting(after)
        for name, (reason, restarts) in new.items():
            if old.get(name, ("", 0))[0] != reason:
                with self._lock:
                    self.transitions.append(Transition(time.time(), after["metadata"]["namespace"],
                                                       after["metadata"]["name"], name, reason, restarts))

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
