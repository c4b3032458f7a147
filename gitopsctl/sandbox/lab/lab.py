"""A whole homelab on one machine: the sandbox and the end-to-end tests run on it.

    git remote (bare repo)  ◄── developer clone (app commits)      CI clone (gitopsctl build/stage)
        │                                                              │
        ├── Kubernetes API emulator + cluster simulator (Flux, kubelet) │ kubeconfig
        └── the "VM": sshd on 127.0.0.2, its own checkout, docker compose ◄── fabric (strict host key)
    registry (docker-registry, htpasswd robot account) ◄── build pushes, kubelet and compose pull
    Docker engine (private dockerd, or the machine's own)

What runs on it is a seed (gitopsctl.sandbox.lab.seed): by default the sandbox's own
homelab, copied from this project's clusters/homelab and examples/ (installed with the
package as its data) with the few changes a local sandbox needs (stated in
`seed._adapt_sandbox`); `Lab(seed=...)` runs any other.
The seed gives the repository's tree and what its gitopsctl.yaml says about services and
targets; the lab adds where they run here (`config_text`). The images the seeded markers
name are built from each service's context and pushed first, so the homelab starts out
live and healthy, as a real one would.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from gitopsctl.errors import ExternalError
from gitopsctl.sandbox.lab.seed import (HomelabSeed, fill, fill_tree, flux_kustomizations, sandbox_seed,
                                        seed_source)


@dataclass
class LabSettings:
    stage_delay: float = 0.0
    failure_timeout: float = 90.0
    healthy_samples: int = 2
    cancel_health_check_on_new_revision: bool = True
    kustomization_timeout: str = "60s"
    restart_backoff: float = 0.5
    dependency_requeue: float = 1.0


@dataclass
class Lab:
    workdir: Path
    settings: LabSettings = field(default_factory=LabSettings)
    # where the sandbox's own homelab is read from; None: the copy installed with gitopsctl,
    # or a checkout's (seed.seed_source)
    source: Path | None = None
    seed: HomelabSeed | None = None  # None: the sandbox's own homelab, from `source`
    progress: Callable[[str], None] = lambda message: None
    engine: object = None
    registry: object = None
    kube: object = None
    sshd: object = None
    remote: object = None
    ci: Path | None = None
    vm_checkout: Path | None = None
    ports: dict[str, int] = field(default_factory=dict)  # <port:NAME> -> a free loopback port
    compose_project: str = ""
    _stack: list = field(default_factory=list)

    # ------------------------------------------------------------- lifecycle

    def start(self) -> "Lab":
        from gitopsctl.sandbox.lab.baseimage import ensure_base_image
        from gitopsctl.sandbox.lab.dockerd import connect_or_start
        from gitopsctl.sandbox.lab.ports import free_port
        from gitopsctl.sandbox.lab.registry import Registry

        self.workdir = Path(self.workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.progress("starting the Docker engine")
            self.engine = connect_or_start(self.workdir / "docker")
            self._stack.append(self.engine.stop)
            self.client = self.engine.client()
            self.base_image = ensure_base_image(self.client)
            self.progress("starting the registry (Harbor stand-in)")
            self.registry = Registry(self.workdir / "registry").start()
            self._stack.append(self.registry.close)
            if self.seed is None:
                self.seed = sandbox_seed(self.source or seed_source(self.workdir / "seed-package"))
            self.ports = {name: free_port() for name in self.seed.port_names()}
            self.compose_project = f"lab{secrets.token_hex(3)}"
            self._write_client_files()
            self._start_vm()
            self.progress("seeding the git remote")
            self._seed_remote()
            self._push_seed_images()
            self._start_cluster()
            self._initial_sync()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.compose_project and self.engine is not None:
            try:
                for container in self.engine.client().containers.list(
                        all=True, filters={"label": f"com.docker.compose.project={self.compose_project}"}):
                    container.remove(force=True)
            except Exception:  # the engine may already be gone; stop() must not raise
                pass
        while self._stack:
            action = self._stack.pop()
            try:
                action()
            except Exception:
                pass

    def __enter__(self) -> "Lab":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------- pieces

    def _write_client_files(self) -> None:
        """Docker credentials for CI (build/push) and for the VM (compose pull)."""
        token = base64.b64encode(f"{self.registry.username}:{self.registry.password}".encode()).decode()
        auths = json.dumps({"auths": {self.registry.url: {"auth": token}}})
        for name in ("ci-docker", "vm/docker"):
            path = self.workdir / name
            path.mkdir(parents=True, exist_ok=True)
            (path / "config.json").write_text(auths)
            os.chmod(path / "config.json", 0o600)
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.vm_key = self.workdir / "vm" / "sealing-key.pem"
        self.vm_key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
        os.chmod(self.vm_key, 0o600)
        self.vm_cert = self.workdir / "vm" / "sealing-key.pub.pem"
        self.vm_cert.write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    def _start_vm(self) -> None:
        from gitopsctl.sandbox.lab.sshd import start_sshd

        self.progress("starting the VM (sshd on 127.0.0.2)")
        venv_bin = Path(sys.executable).parent
        self.sshd = start_sshd(self.workdir / "vm" / "sshd", environment={
            "DOCKER_HOST": self.engine.docker_host,
            "DOCKER_CONFIG": str(self.workdir / "vm" / "docker"),
            "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            **self._seed_vm_env(), "NO_COLOR": "1"})
        self._stack.append(self.sshd.stop)
        self.vm_checkout = self.workdir / "vm" / "homelab"

    def _seed_vm_env(self) -> dict[str, str]:
        return {key: fill(value, self.registry.url, self.ports) for key, value in self.seed.vm_env.items()}

    def config_text(self) -> str:
        """gitopsctl.yaml, version 2: the seed's services and targets, placed on this machine."""
        seeded = json.loads(fill(json.dumps(self.seed.config), self.registry.url, self.ports))
        venv_bin = Path(sys.executable).parent
        # Where each kind of target is on this machine: one cluster (the emulator, whose
        # GitRepository is flux-system) and one VM; the seed says what runs there.
        placed = {
            "kubernetes": {"kubeconfig": str(self.workdir / "kube" / "kubeconfig"),
                           "git_repository": {"name": "flux-system", "namespace": "flux-system"}},
            "vm": {"host": self.sshd.host, "port": self.sshd.port, "user": self.sshd.user,
                   "identity_file": str(self.sshd.client_key), "known_hosts": str(self.sshd.known_hosts),
                   "checkout": str(self.vm_checkout), "compose_project": self.compose_project,
                   "unseal_key": str(self.vm_key), "remote_command": str(venv_bin / "gitopsctl")},
        }
        targets = seeded.get("targets") or {}
        kinds = [t.get("kind") for t in targets.values()]
        if kinds.count("vm") > 1:
            raise ValueError("a lab has one VM: the seed may name one target of kind vm")
        doc = {
            "version": 2,
            "registry": {"url": self.registry.url, "project": "homelab", "insecure": True},
            "git": {"remote": "origin", "branch": "main"},
            "services": seeded.get("services") or {},
            "targets": {name: {**target, **placed.get(target.get("kind"), {})}
                        for name, target in targets.items()},
            "stage": {**(seeded.get("stage") or {}), "delay": self.settings.stage_delay},
            **({"consistency": seeded["consistency"]} if seeded.get("consistency") else {}),
            "timeouts": {"failure": self.settings.failure_timeout, "http": 2,
                         "ssh_connect": 5, "healthy_samples": self.settings.healthy_samples},
        }
        header = ("# A lab homelab: every service runs on this machine (see gitopsctl/sandbox/lab/lab.py).\n")
        return header + json.dumps(doc, indent=2) + "\n"

    def config(self):
        """The CI clone's gitopsctl.yaml, loaded as gitopsctl loads it (no environment overrides)."""
        from gitopsctl import config as configmod

        return configmod.load(self.ci / configmod.CONFIG_FILENAME, environ={})

    def _seed_remote(self) -> None:
        from gitopsctl.sandbox.lab.gitremote import make_git_remote

        staging = self.workdir / "seed"
        if staging.exists():
            shutil.rmtree(staging)
        for rel, source in self.seed.tree.items():
            dest = staging / rel
            if Path(source).is_dir():
                shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__", ".gitopsctl"))
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest)
        fill_tree(staging, self.registry.url, self.ports)
        if self.seed.adapt is not None:
            self.seed.adapt(self, staging)
        files = {".gitignore": ".gitopsctl/\n", "README.md": "A gitopsctl sandbox homelab.\n"}
        self.remote = make_git_remote(self.workdir / "git", {p.name: p for p in staging.iterdir()},
                                      files={k: v for k, v in files.items() if not (staging / k).exists()},
                                      message="homelab: initial import")
        self.remote.write({"gitopsctl.yaml": self.config_text()})
        self.remote.commit_all("homelab: gitopsctl.yaml for the sandbox")
        self.remote.push()
        self.ci = self.remote.clone(self.workdir / "ci")
        self.remote.clone(self.vm_checkout)

    def _push_seed_images(self) -> None:
        from gitopsctl.sandbox.lab.seed import push_seed_images

        push_seed_images(self.config(), self.ci, self.client, self.registry,
                         base_image=self.base_image, progress=self.progress)

    def _start_cluster(self) -> None:
        from gitopsctl.sandbox.lab.kube import FluxOptions, KubeEmulator

        self.progress("starting the Kubernetes API emulator and cluster simulator")
        auth = {self.registry.url: {"username": self.registry.username,
                                    "password": self.registry.password}}
        # The gate as clusters/homelab/flux-system/kustomization.yaml sets it (on); benchmarks
        # turn it off to measure the hold-back.
        # --requeue-dependency scaled down: at start, `apps` waits for `routing` (dependsOn);
        # a stage never does, since gitopsctl reconciles the target's Kustomizations in order.
        flux = FluxOptions(cancel_health_check_on_new_revision=self.settings.cancel_health_check_on_new_revision,
                           dependency_requeue_interval=self.settings.dependency_requeue)
        self.kube = KubeEmulator(self.workdir / "kube", docker_client=self.client, registry_auth=auth,
                                 restart_backoff=self.settings.restart_backoff, max_backoff=2.0, flux=flux)
        self.kube.start()
        self._stack.append(self.kube.stop)
        self.kube.add_git_repository("flux-system", url=self.remote.url, branch="main")
        # What the cluster's root Kustomization would create from the repository's manifests.
        manifests = flux_kustomizations(self.ci)
        for target_name, target in self.config().targets_of_kind("kubernetes").items():
            for ref in target.kustomizations:
                spec = manifests.get((ref.namespace, ref.name)) or {}
                if not spec.get("path"):
                    raise ExternalError(f"targets.{target_name} names Kustomization {ref.namespace}/"
                                        f"{ref.name}, but no manifest in the seeded tree gives it a path",
                                        hint="add a kustomize.toolkit.fluxcd.io/v1 Kustomization with "
                                             "spec.path to the seed")
                self.kube.add_kustomization(ref.name, namespace=ref.namespace, path=spec["path"],
                                            wait=bool(spec.get("wait", False)),
                                            timeout=self.settings.kustomization_timeout,
                                            depends_on=[d["name"] for d in spec.get("dependsOn") or []]
                                            or None)
        try:
            self._wait_seed_healthy("kubernetes", 90)
        except ExternalError as exc:
            raise ExternalError(f"{exc.message}; cluster: {self.cluster_summary()}") from None

    def _initial_sync(self) -> None:
        self.progress("syncing the VM (docker compose up)")
        result = self.gitopsctl("sync", cwd=self.vm_checkout, env=self.vm_env(), check=False)
        if result.returncode != 0:
            raise ExternalError("the sandbox VM's first sync failed: "
                                + (result.stderr.strip().splitlines() or ["?"])[-1])
        self._wait_seed_healthy("vm", 60)

    def _wait_seed_healthy(self, kind: str, seconds: float) -> None:
        from gitopsctl.sandbox.lab.seed import wait_seed_healthy

        wait_seed_healthy(self.config(), kind, seconds)

    # ------------------------------------------------------------- using it

    @property
    def node_port(self) -> int:
        """The sandbox homelab's frontend NodePort."""
        return self.ports["frontend"]

    @property
    def backend_port(self) -> int:
        """The sandbox homelab's backend port on the VM."""
        return self.ports["backend"]

    @property
    def frontend_url(self) -> str:
        return f"http://127.0.0.1:{self.node_port}/healthz"

    @property
    def backend_url(self) -> str:
        return f"http://127.0.0.1:{self.backend_port}/healthz"

    def ci_env(self) -> dict[str, str]:
        """What a CI runner has: registry robot account, SSH key and known_hosts, kubeconfig."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GITOPSCTL_", "DOCKER_"))}
        env.update({"DOCKER_HOST": self.engine.docker_host,
                    "DOCKER_CONFIG": str(self.workdir / "ci-docker"),
                    "HARBOR_USERNAME": self.registry.username,
                    "HARBOR_PASSWORD": self.registry.password,
                    "KUBECONFIG": str(self.workdir / "kube" / "kubeconfig"), "NO_COLOR": "1"})
        return env

    def vm_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GITOPSCTL_", "DOCKER_"))}
        env.update({"DOCKER_HOST": self.engine.docker_host,
                    "DOCKER_CONFIG": str(self.workdir / "vm" / "docker"),
                    **self._seed_vm_env(), "NO_COLOR": "1"})
        return env

    def gitopsctl(self, *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None,
                  check: bool = False, timeout: float = 600) -> subprocess.CompletedProcess:
        """Run the real CLI (a subprocess, as CI does) in the CI clone by default."""
        return subprocess.run([sys.executable, "-m", "gitopsctl", *args], cwd=cwd or self.ci,
                              env=dict(env or self.ci_env()), capture_output=True, text=True,
                              timeout=timeout, check=check, stdin=subprocess.DEVNULL)

    def commit_app_change(self, files: Mapping[str, str], message: str) -> str:
        """A developer pushes an app change; returns the source SHA the pipeline builds."""
        from gitopsctl.sandbox.lab.gitremote import git

        git(self.remote.work, "pull", "-q", "--ff-only", "origin", "main")
        self.remote.write(files)
        sha = self.remote.commit_all(message)
        self.remote.push()
        git(self.ci, "fetch", "-q", "origin")
        git(self.ci, "checkout", "-q", "--detach", sha)
        return sha

    def log(self, fmt: str = "%h %s") -> list[str]:
        return self.remote.log(fmt=fmt)

    def served_version(self, service: str) -> str | None:
        """What /version answers on the live service (the SOURCE_SHA it was built from);
        "route": what the frontend answers on /api/version, from the backend it reaches."""
        import urllib.request

        if service == "route":  # the backend, as the frontend reaches it through the cluster
            url = self.frontend_url.replace("/healthz", "/api/version")
        else:
            url = (self.frontend_url if service == "frontend" else self.backend_url).replace("/healthz", "/version")
        try:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(url, timeout=2) as resp:
                return resp.read().decode().strip()
        except OSError:
            return None

    def cluster_summary(self) -> str:
        """One line per Flux object and pod: what a human would ask kubectl for."""
        from gitopsctl.sandbox.lab.kube.store import GIT_REPOSITORIES, KUSTOMIZATIONS, PODS

        if self.kube is None:
            return "no cluster"
        lines = []
        for kind in (GIT_REPOSITORIES, KUSTOMIZATIONS):
            for obj in self.kube.store.list(kind)[0]:
                ready = next((c for c in (obj.get("status") or {}).get("conditions", [])
                              if c.get("type") == "Ready"), {})
                lines.append(f"{kind.kind} {obj['metadata']['name']}: {ready.get('reason')} "
                             f"{ready.get('message', '')[:200]}")
        for pod in self.kube.store.list(PODS)[0]:
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            states = ", ".join(f"{c.get('name')}={next(iter(c.get('state') or {'?': 0}))}"
                               f"(restarts {c.get('restartCount', 0)})" for c in statuses)
            lines.append(f"pod {pod['metadata']['name']}: {pod.get('status', {}).get('phase')} {states}")
        errors = getattr(self.kube.simulator, "errors", [])
        return "; ".join(lines + [f"simulator error: {e}" for e in errors[-3:]])
