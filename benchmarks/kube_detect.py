"""Print how fast the frontend target reports a failing rollout on the Kubernetes emulator.

    .venv/bin/python benchmarks/kube_detect.py [--runs N]

Starts a private dockerd, docker-registry and the Kubernetes API emulator with its
cluster simulator (all on loopback), builds examples/frontend, then per run pushes a
healthy release followed by a crashing one (FAIL_MODE=crash) and a missing image
(with the simulator's CancelHealthCheckOnNewRevision switch on, so a good release is
not held back behind the bad one's health check):

  detect     crash loop: the pod's first failure visible in the API (the first exit,
             state.terminated non-zero) -> gitopsctl's report (includes fetching the
             last log lines; the budget is 2 s); missing image: the moment a pull
             failure becomes a verdict (first ErrImagePull + PULL_FAILURE_GRACE) -> report
  ahead      crash loop (exits at once) and late crash loop (exits after 2 s): how
             long before the kubelet's first CrashLoopBackOff the verdict came
             (gitopsctl judges at the first restart after a non-zero exit)
  to-fail    push of the bad commit -> failed HealthReport (reconcile + rollout + detection)
  healthy    push of a good commit -> healthy HealthReport

The kubelet runs on the sandbox's clock (restart back-off 0.5 s for the real 10 s); the
crash-loop states come in the kubelet's order (see gitopsctl/sandbox/lab/kube/kubelet.py).
Exits 1 when any detection takes 2 s or more.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests" / "kube"))

BUDGET = 2.0
# Starts, then dies after 2 s: the early verdict saves the whole second run.
LATE_CRASH = ["/bin/sh", "-c", "echo starting; sleep 2; echo giving up >&2; exit 3"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from conftest import APP_PATH, KUSTOMIZATION_YAML, NAMESPACE, Cluster, deployment_yaml, service_yaml

    from gitopsctl.sandbox.lab.baseimage import ensure_base_image
    from gitopsctl.sandbox.lab.dockerd import DockerEngine
    from gitopsctl.sandbox.lab.gitremote import make_git_remote
    from gitopsctl.sandbox.lab.kube import KubeEmulator
    from gitopsctl.sandbox.lab.ports import free_port
    from gitopsctl.sandbox.lab.registry import Registry
    from gitopsctl.health import probe_http
    from gitopsctl.targets.rollout import FAILING_WAIT_REASONS, PULL_FAILURE_GRACE

    work = Path(tempfile.mkdtemp(prefix="kube-detect-"))
    engine = DockerEngine.start(work / "dockerd")
    registry = Registry(work / "registry").start()
    kube = None
    try:
        client = engine.client()
        base = ensure_base_image(client)
        repository = f"{registry.url}/homelab/frontend"
        client.images.build(path=str(REPO_ROOT / "examples" / "frontend"), tag=f"{repository}:v1", rm=True,
                            buildargs={"BASE_IMAGE": base, "SOURCE_SHA": "v1"})
        auth = {"username": registry.username, "password": registry.password}
        for event in client.api.push(repository, tag="v1", stream=True, decode=True, auth_config=auth):
            if "error" in event:
                raise SystemExit(f"push failed: {event['error']}")
        image = f"{repository}:v1"

        kube = KubeEmulator(work / "kube", docker_client=client, registry_auth={registry.url: auth}).start()
        port, node_port = free_port(), free_port()
        remote = make_git_remote(work / "git", files={
            f"{APP_PATH}/kustomization.yaml": KUSTOMIZATION_YAML,
            f"{APP_PATH}/deployment.yaml": deployment_yaml(image, port=port),
            f"{APP_PATH}/service.yaml": service_yaml(port, node_port)})
        kube.add_git_repository("flux-system", url=remote.url, branch="main")
        kube.add_kustomization("apps", path=f"./{APP_PATH}", wait=True, timeout="5m", target_namespace=NAMESPACE)
        # Each bad release is followed at once by a good one; without the feature gate the
        # good one would wait out the bad one's 5 m health check (see test_rollout.py).
        kube.simulator.cancel_health_check_on_new_revision = True
        cluster = Cluster(kube, remote, image, port, node_port)
        deadline = time.monotonic() + 60
        while not probe_http(cluster.health_url, timeout=1).ok and time.monotonic() < deadline:
            time.sleep(0.1)
        target = cluster.target()

        detect: dict[str, list[float]] = {"crash loop": [], "late crash loop": [], "missing image": []}
        ahead: dict[str, list[float]] = {"crash loop": [], "late crash loop": []}
        to_fail: list[float] = []
        healthy: list[float] = []
        for run in range(args.runs):
            for kind in ("healthy", "crash loop", "healthy", "late crash loop", "healthy", "missing image"):
                started = time.monotonic()
                if kind == "healthy":
                    sha = cluster.push(message=f"good {run}")
                elif kind == "crash loop":
                    sha = cluster.push(mode="crash", message=f"crash {run}")
                elif kind == "late crash loop":
                    sha = cluster.push(command=LATE_CRASH, message=f"late crash {run}")
                else:
                    sha = cluster.push(image=f"{repository}:missing-{run}", message=f"missing {run}")
                report = cluster.deploy(target, sha, timeout=120)
                took = time.monotonic() - started
                if kind == "healthy":
                    if not report.healthy:
                        raise SystemExit(f"healthy release failed: {report.reason}")
                    healthy.append(took)
                    continue
                pod = report.details.get("pod")
                reported = report.details["reported_at"]
                if kind in ahead:
                    detect[kind].append(reported - first_shown(kube, pod, FAILING_WAIT_REASONS))
                    clbo = wait_for_reason(kube, pod, "CrashLoopBackOff", 15)
                    ahead[kind].append(clbo - reported if clbo is not None else float("nan"))
                    extra = (f", {ahead[kind][-1] * 1000:.0f} ms before CrashLoopBackOff showed" if clbo is not None
                             else ", CrashLoopBackOff never showed")
                else:
                    judged = first_shown(kube, pod, FAILING_WAIT_REASONS) + PULL_FAILURE_GRACE
                    detect[kind].append(reported - judged)
                    extra = f" (pull grace {PULL_FAILURE_GRACE:.0f} s)"
                to_fail.append(took)
                print(f"run {run + 1}: {report.reason}: detected {detect[kind][-1] * 1000:.0f} ms after the API "
                      f"showed it{extra}, {took:.2f} s after the push", flush=True)

        def line(name: str, values: list[float], unit: str = "s") -> str:
            scale = 1000 if unit == "ms" else 1
            return (f"{name:<30} median {statistics.median(values) * scale:8.1f} {unit}   "
                    f"max {max(values) * scale:8.1f} {unit}   (n={len(values)})")

        print()
        for kind, values in detect.items():
            print(line(f"detect {kind}", values, "ms"))
        for kind, values in ahead.items():
            if values and all(v == v for v in values):  # nan: CrashLoopBackOff never showed
                print(line(f"{kind} ahead of CLBO", values, "ms"))
        print(line("push -> failed report", to_fail))
        print(line("push -> healthy report", healthy))
        worst = max(v for values in detect.values() for v in values)
        print(f"\ndetection budget {BUDGET:.0f} s: {'OK' if worst < BUDGET else 'EXCEEDED'}")
        return 0 if worst < BUDGET else 1
    finally:
        if kube is not None:
            kube.stop()
        registry.close()
        engine.stop()


def first_shown(kube, pod: str, failing: frozenset) -> float:
    """When the API first showed `pod` failing: a waiting reason of `failing`, or a non-zero exit."""
    return min(t.at for t in kube.simulator.kubelet.transitions
               if t.pod == pod and (t.reason in failing or (t.state == "terminated" and t.reason != "Completed")))


def wait_for_reason(kube, pod: str, reason: str, seconds: float) -> float | None:
    """When `pod` first showed `reason`, waiting up to `seconds` for it; None if it never did."""
    deadline = time.monotonic() + seconds
    while True:
        times = [t.at for t in kube.simulator.kubelet.transitions if t.pod == pod and t.reason == reason]
        if times or time.monotonic() >= deadline:
            return min(times) if times else None
        time.sleep(0.05)


if __name__ == "__main__":
    raise SystemExit(main())
