"""Print how fast the frontend target reports a failing rollout on the Kubernetes emulator.

    .venv/bin/python benchmarks/kube_detect.py [--runs N]

Starts a private dockerd, docker-registry and the Kubernetes API emulator with its
cluster simulator (all on loopback), builds examples/frontend, then per run pushes a
healthy release followed by a crashing one (FAIL_MODE=crash) and a missing image
(with the simulator's CancelHealthCheckOnNewRevision switch on, so a good release is
not held back behind the bad one's health check):

  detect     the pod's first failing state visible in the API -> gitopsctl's report
             (includes fetching the last log lines; the budget is 2 s)
  to-fail    push of the bad commit -> failed HealthReport (reconcile + rollout + detection)
  healthy    push of a good commit -> healthy HealthReport

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from conftest import APP_PATH, KUSTOMIZATION_YAML, NAMESPACE, Cluster, deployment_yaml, service_yaml

    from gitopsctl.harness.baseimage import ensure_base_image
    from gitopsctl.harness.dockerd import DockerEngine
    from gitopsctl.harness.gitremote import make_git_remote
    from gitopsctl.harness.kube import KubeEmulator
    from gitopsctl.harness.ports import free_port
    from gitopsctl.harness.registry import Registry
    from gitopsctl.health import probe_http
    from gitopsctl.targets.rollout import FAILING_WAIT_REASONS

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

        detect: dict[str, list[float]] = {"crash loop": [], "missing image": []}
        to_fail: list[float] = []
        healthy: list[float] = []
        for run in range(args.runs):
            for kind in ("healthy", "crash loop", "healthy", "missing image"):
                started = time.monotonic()
                if kind == "healthy":
                    sha = cluster.push(message=f"good {run}")
                elif kind == "crash loop":
                    sha = cluster.push(mode="crash", message=f"crash {run}")
                else:
                    sha = cluster.push(image=f"{repository}:missing-{run}", message=f"missing {run}")
                report = cluster.deploy(target, sha, timeout=120)
                took = time.monotonic() - started
                if kind == "healthy":
                    if not report.healthy:
                        raise SystemExit(f"healthy release failed: {report.reason}")
                    healthy.append(took)
                    continue
                # From the first failing state of that pod the API showed (ErrImagePull comes
                # before ImagePullBackOff), not from the state that happened to be reported.
                shown = min(t.at for t in kube.simulator.kubelet.transitions
                            if t.pod == report.details.get("pod") and t.reason in FAILING_WAIT_REASONS)
                detect[kind].append(report.details["reported_at"] - shown)
                to_fail.append(took)
                print(f"run {run + 1}: {report.reason}: detected {detect[kind][-1] * 1000:.0f} ms after the API "
                      f"showed it, {took:.2f} s after the push", flush=True)

        def line(name: str, values: list[float], unit: str = "s") -> str:
            scale = 1000 if unit == "ms" else 1
            return (f"{name:<28} median {statistics.median(values) * scale:8.1f} {unit}   "
                    f"max {max(values) * scale:8.1f} {unit}   (n={len(values)})")

        print()
        for kind, values in detect.items():
            print(line(f"detect {kind}", values, "ms"))
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


if __name__ == "__main__":
    raise SystemExit(main())
