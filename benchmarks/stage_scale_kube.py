"""stage_scale.py's real targets: N Deployments on the Kubernetes API emulator.

A private dockerd and docker-registry, examples/frontend built once; per case a fresh
emulator (its Flux and kubelet: pods are real containers) and git remote holding one
Deployment + NodePort Service per service in one Flux Kustomization. Each run tags and
pushes the image the stage will deploy for every service (not timed), then calls stage()
with the production targets (the real kubernetes client through a kubeconfig). A group's
inherent wait is what the cluster took, as the emulator's store shows it
(pipeline_watch.ClusterWatch): from Flux first attempting the group's commit to every
new pod of the group ready.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path

from stage_scale import REPO_ROOT, Run, healthy_steps, split

NAMESPACE = "web"

DEPLOYMENT = textwrap.dedent("""\
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: {name}
    spec:
      replicas: 1
      selector:
        matchLabels: {{app: {name}}}
      template:
        metadata:
          labels: {{app: {name}}}
        spec:
          containers:
            - name: {name}
              image: {image} # {{"$imagepolicy": "flux-system:{name}"}}
              ports: [{{name: http, containerPort: {port}}}]
              env:
                - {{name: PORT, value: "{port}"}}
                - {{name: FAIL_MODE, value: none}}
                - name: LISTEN
                  valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}
              readinessProbe:
                httpGet: {{path: /healthz, port: http}}
                periodSeconds: 1
                failureThreshold: 1
    ---
    apiVersion: v1
    kind: Service
    metadata:
      name: {name}
    spec:
      type: NodePort
      selector: {{app: {name}}}
      ports: [{{port: 80, targetPort: http, nodePort: {node_port}}}]
    """)


@contextmanager
def lab():
    """dockerd, registry and the frontend image, for every case of the run."""
    from gitopsctl.sandbox.lab.baseimage import ensure_base_image
    from gitopsctl.sandbox.lab.dockerd import DockerEngine
    from gitopsctl.sandbox.lab.registry import Registry

    work = Path(tempfile.mkdtemp(prefix="stage-scale-kube-"))
    engine = DockerEngine.start(work / "dockerd")
    registry = Registry(work / "registry").start()
    try:
        client = engine.client()
        base = ensure_base_image(client)
        image = f"{registry.url}/homelab/frontend:v1"
        client.images.build(path=str(REPO_ROOT / "examples" / "frontend"), tag=image, rm=True,
                            buildargs={"BASE_IMAGE": base, "SOURCE_SHA": "v1"})
        yield {"work": work, "client": client, "registry": registry, "image": image,
               "auth": {"username": registry.username, "password": registry.password}}
    finally:
        registry.close()
        engine.stop()
        shutil.rmtree(work, ignore_errors=True)


def config_text(services: list[str], grouped: bool, kubeconfig: Path, node_ports: dict, registry: str) -> str:
    from ruamel.yaml import YAML

    entries = {name: {"image": name, "context": f"apps/{name}", "target": "cluster",
                      "policy": f"flux-system:{name}", "paths": [f"deploy/{name}"],
                      "workloads": [{"kind": "Deployment", "name": name, "namespace": NAMESPACE}],
                      "health": [{"http": f"http://127.0.0.1:{node_ports[name]}/healthz"}]}
               for name in services}
    config = {"version": 2, "registry": {"url": registry, "project": "homelab", "insecure": True},
              "services": entries,
              "targets": {"cluster": {"kind": "kubernetes", "kubeconfig": str(kubeconfig),
                                      "git_repository": {"name": "flux-system"},
                                      "kustomizations": [{"name": "apps"}]}},
              "stage": {"order": [services] if grouped and len(services) > 1 else services, "delay": "0s"},
              "timeouts": {"failure": "180s", "http": "2s", "healthy_samples": 2}}
    buf = io.StringIO()
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.dump(config, buf)
    return buf.getvalue()


def push_images(env: dict, services: list[str], tag: str) -> None:
    client, registry = env["client"], env["registry"]
    source = client.images.get(env["image"])
    for name in services:
        repository = f"{registry.url}/homelab/{name}"
        source.tag(repository, tag)
        for event in client.api.push(repository, tag=tag, stream=True, decode=True, auth_config=env["auth"]):
            if "error" in event:
                raise SystemExit(f"push of {repository}:{tag} failed: {event['error']}")


def measure(env: dict, count: int, grouped: bool, runs: int) -> list[Run]:
    from pipeline_watch import ClusterWatch

    from gitopsctl.commands import Context
    from gitopsctl.console import NullReporter
    from gitopsctl.deploy.stage import stage
    from gitopsctl.health import probe_http
    from gitopsctl.sandbox.lab.gitremote import make_git_remote
    from gitopsctl.sandbox.lab.kube import KubeEmulator
    from gitopsctl.sandbox.lab.ports import free_port
    from gitopsctl.targets.factory import production_targets

    services = [f"svc{i}" for i in range(count)]
    groups = [services] if grouped else [[s] for s in services]
    case = env["work"] / f"{count}-{grouped}"
    registry = env["registry"]
    kube = KubeEmulator(case / "kube", docker_client=env["client"],
                        registry_auth={registry.url: env["auth"]}).start()
    try:
        push_images(env, services, "v1")
        node_ports = {name: free_port() for name in services}
        files = {"deploy/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
                 "resources:\n" + "".join(f"  - {name}/deployment.yaml\n" for name in services),
                 "gitopsctl.yaml": config_text(services, grouped, kube.kubeconfig, node_ports, registry.url),
                 ".gitignore": ".gitopsctl/\n"}
        for name in services:
            files[f"deploy/{name}/deployment.yaml"] = DEPLOYMENT.format(
                name=name, image=f"{registry.url}/homelab/{name}:v1", port=free_port(), node_port=node_ports[name])
        remote = make_git_remote(case / "git", files=files)
        kube.add_git_repository("flux-system", url=remote.url, branch="main")
        kube.add_kustomization("apps", path="./deploy", wait=True, timeout="5m", target_namespace=NAMESPACE)
        deadline = time.monotonic() + 180
        while not all(probe_http(f"http://127.0.0.1:{p}/healthz", timeout=1).ok for p in node_ports.values()):
            if time.monotonic() > deadline:
                raise SystemExit(f"the first release of {count} services never became healthy: "
                                 f"{kube.simulator.errors}")
            time.sleep(0.2)
        watch = ClusterWatch(kube.store).start()
        out = []
        try:
            for run in range(runs + 1):  # the first run warms imports and the client; not counted
                remote.write({"app/version.txt": f"v{run}\n"})
                source = remote.commit_all(f"app: v{run}")
                remote.push()
                push_images(env, services, source[:7])
                ctx = Context(repo=remote.work, config_path=remote.work / "gitopsctl.yaml", environ={},
                              reporter=NullReporter())
                began = time.time()
                start = time.perf_counter()
                result = stage(ctx, production_targets(ctx), source=source, allow_unbuilt=True)
                total = time.perf_counter() - start
                if result.exit_code != 0:
                    raise SystemExit(f"stage of {count} services failed: {result.to_dict()}")
                tips = [result.commits[services.index(group[-1])] for group in groups]
                waits = sum(_cluster_took(watch, group, tip, source[:7], began)
                            for group, tip in zip(groups, tips))
                steps = healthy_steps(result)
                if run:
                    out.append(Run(total, waits, max(steps[-len(groups[-1]):]), steps, split(result)))
        finally:
            watch.stop()
        return out
    finally:
        kube.stop()


def _cluster_took(watch, group: list[str], tip: str, tag: str, after: float) -> float:
    """From Flux first attempting the group's commit to every new pod of the group ready:
    what the cluster took (Flux's fetch and apply, the rollouts, the pods' start-up).
    Flux's own Ready comes later, after its health-check poll; gitopsctl judges the
    rollouts and pods itself and does not wait for it."""
    attempted = watch.attempted_at(tip, after)
    ready = []
    for service in group:
        pods = [p for p in watch.pods_with_image(f"/{service}:{tag}") if p.ready is not None]
        if not pods:
            raise SystemExit(f"no ready pod of {service}:{tag} was seen")
        ready.append(max(p.ready for p in pods))
    return max(ready) - attempted
