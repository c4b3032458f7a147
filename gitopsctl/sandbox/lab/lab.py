"""A whole homelab on one machine: the sandbox and the end-to-end tests run on it.

    git remote (bare repo)  ◄── developer clone (app commits)      CI clone (gitopsctl build/stage)
        │                                                              │
        ├── Kubernetes API emulator + cluster simulator (Flux, kubelet) │ kubeconfig
        └── the "VM": sshd on 127.0.0.2, its own checkout, docker compose ◄── fabric (strict host key)
    registry (docker-registry, htpasswd robot account) ◄── build pushes, kubelet and compose pull
    Docker engine (private dockerd, or the machine's own)

The repository is seeded from this project's clusters/homelab and examples/, with the
few changes a local sandbox needs (stated in `_adapt`): `harbor.lan` becomes the local
registry, the frontend NodePort and backend port become free local ports, the backend's
healthcheck probes every second, its example SealedSecret is sealed for the sandbox
VM's own key, and gitopsctl.yaml points at the sandbox services. The images the seeded manifests name are built and pushed
first, so the homelab starts out live and healthy, as a real one would.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from gitopsctl.errors import ExternalError

SEED_DIRS = ("clusters/homelab", "examples/frontend", "examples/backend")
FRONTEND_APP = "clusters/homelab/apps/frontend"
COMPOSE_FILE = "clusters/homelab/backend-vm/docker-compose.yml"
SEALED_FILE = "clusters/homelab/backend-vm/backend-secrets.sealed.yaml"
DEFAULT_NODE_PORT = "30080"


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


@dataclass
class LabSettings:
    stage_delay: float = 0.0
    failure_timeout: float = 90.0
    healthy_samples: int = 2
    cancel_health_check_on_new_revision: bool = True
    kustomization_timeout: str = "60s"
    restart_backoff: float = 0.5


@dataclass
class Lab:
    workdir: Path
    settings: LabSettings = field(default_factory=LabSettings)
    source: Path = field(default_factory=project_root)
    progress: Callable[[str], None] = lambda message: None
    engine: object = None
    registry: object = None
    kube: object = None
    sshd: object = None
    remote: object = None
    ci: Path | None = None
    vm_checkout: Path | None = None
    node_port: int = 0
    backend_port: int = 0
    compose_project: str = ""
    _stack: list = field(default_factory=list)

    # ------------------------------------------------------------- lifecycle

    def start(self) -> "Lab":
        from gitopsctl.harness.baseimage import ensure_base_image
        from gitopsctl.harness.dockerd import connect_or_start
        from gitopsctl.harness.ports import free_port
        from gitopsctl.harness.registry import Registry

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
            self.node_port, self.backend_port = free_port(), free_port()
            self.compose_project = f"lab{secrets.token_hex(3)}"
            self._write_client_files()
            self._start_vm()
            self.progress("seeding the git remote from clusters/ and examples/")
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
        from gitopsctl.harness.sshd import start_sshd

        self.progress("starting the VM (sshd on 127.0.0.2)")
        venv_bin = Path(sys.executable).parent
        self.sshd = start_sshd(self.workdir / "vm" / "sshd", environment={
            "DOCKER_HOST": self.engine.docker_host,
            "DOCKER_CONFIG": str(self.workdir / "vm" / "docker"),
            "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "BACKEND_PORT": str(self.backend_port), "NO_COLOR": "1"})
        self._stack.append(self.sshd.stop)
        self.vm_checkout = self.workdir / "vm" / "homelab"

    def config_text(self) -> str:
        venv_bin = Path(sys.executable).parent
        kube = {
            "kubeconfig": str(self.workdir / "kube" / "kubeconfig"),
            "git_repository": {"name": "flux-system", "namespace": "flux-system"},
            "kustomization": {"name": "apps", "namespace": "flux-system"},
            "deployment": {"name": "frontend", "namespace": "default"},
            "health_url": f"http://127.0.0.1:{self.node_port}/healthz",
        }
        if (self.workdir / "git" / "work" / "clusters").exists() and self._has_automation():
            kube["image_update_automation"] = {"name": "homelab", "namespace": "flux-system"}
        doc = {
            "version": 1,
            "registry": {"url": self.registry.url, "project": "homelab", "insecure": True},
            "git": {"remote": "origin", "branch": "main"},
            "services": {
                "frontend": {"image": "frontend", "context": "examples/frontend",
                             "target": "kubernetes", "policy": "flux-system:frontend",
                             "paths": [FRONTEND_APP]},
                "backend": {"image": "backend", "context": "examples/backend", "target": "vm",
                            "policy": "flux-system:backend", "paths": ["clusters/homelab/backend-vm"]},
            },
            "targets": {
                "kubernetes": kube,
                "vm": {"host": self.sshd.host, "port": self.sshd.port, "user": self.sshd.user,
                       "identity_file": str(self.sshd.client_key),
                       "known_hosts": str(self.sshd.known_hosts),
                       "checkout": str(self.vm_checkout), "compose_file": COMPOSE_FILE,
                       "compose_project": self.compose_project,
                       "env_file": ".gitopsctl/backend.env", "sealed_secrets": [SEALED_FILE],
                       "unseal_key": str(self.vm_key),
                       "remote_command": str(venv_bin / "gitopsctl"),
                       "health_url": f"http://127.0.0.1:{self.backend_port}/healthz"},
            },
            "stage": {"order": ["frontend", "backend"], "delay": self.settings.stage_delay},
            "timeouts": {"failure": self.settings.failure_timeout, "http": 2,
                         "ssh_connect": 5, "healthy_samples": self.settings.healthy_samples},
        }
        header = ("# The sandbox homelab: every service runs on this machine (see gitopsctl/harness/lab.py).\n")
        return header + json.dumps(doc, indent=2) + "\n"

    def _has_automation(self) -> bool:
        from gitopsctl import automation

        return automation.find(self.workdir / "git" / "work" / "clusters", "homelab", "flux-system") is not None

    def _seed_remote(self) -> None:
        from gitopsctl.harness.gitremote import make_git_remote

        staging = self.workdir / "seed"
        if staging.exists():
            shutil.rmtree(staging)
        for rel in SEED_DIRS:
            shutil.copytree(self.source / rel, staging / rel,
                            ignore=shutil.ignore_patterns("__pycache__", ".gitopsctl"))
        self._adapt(staging)
        files = {".gitignore": ".gitopsctl/\n", "README.md": "A gitopsctl sandbox homelab.\n"}
        self.remote = make_git_remote(self.workdir / "git", {p: staging / p for p in ("clusters", "examples")},
                                      files=files, message="homelab: initial import")
        # The config names the automation only if the seeded clusters/ has one.
        self.remote.write({"gitopsctl.yaml": self.config_text()})
        self.remote.commit_all("homelab: gitopsctl.yaml for the sandbox")
        self.remote.push()
        self.ci = self.remote.clone(self.workdir / "ci")
        self.remote.clone(self.vm_checkout)

    def _adapt(self, staging: Path) -> None:
        """The only differences between clusters/homelab and the sandbox's copy of it."""
        from gitopsctl import sealed

        for path in (staging / "clusters").rglob("*.y*ml"):
            text = path.read_text()
            new = text.replace("harbor.lan", self.registry.url)
            if path.name == "service.yaml" and "frontend" in str(path.parent):
                new = new.replace(f"nodePort: {DEFAULT_NODE_PORT}", f"nodePort: {self.node_port}")
            if path.name == "docker-compose.yml":
                # A sandbox has no patience to spare: probe every second from the start.
                new = re.sub(r"(?m)^(\s+)interval: \S+$", r"\1interval: 1s", new)
                new = re.sub(r"(?m)^(\s+)start_period: \S+$", r"\1start_period: 0s", new)
            if new != text:
                path.write_text(new)
        sealed_path = staging / SEALED_FILE
        secret = {"apiVersion": "v1", "kind": "Secret",
                  "metadata": {"name": "backend-secrets", "namespace": "backend"},
                  "stringData": {"API_TOKEN": secrets.token_urlsafe(16)}}
        manifest = sealed.seal_secret(secret, sealed.load_public_key(self.vm_cert.read_bytes()),
                                      scope="strict")
        sealed_path.parent.mkdir(parents=True, exist_ok=True)
        sealed_path.write_text(sealed.dump_manifest(manifest))

    def _push_seed_images(self) -> None:
        """Build examples/ and push them under the references the seeded manifests name."""
        from gitopsctl import setters
        from gitopsctl.imageref import parse_reference

        wanted: dict[str, str] = {}
        for path in setters.yaml_files([self.ci / "clusters"]):
            for marker in setters.scan_file(path).markers:
                if marker.field == "image":
                    wanted.setdefault(marker.policy.split(":")[1], marker.value)
        auth = {"username": self.registry.username, "password": self.registry.password}
        for service, ref in wanted.items():
            self.progress(f"building the seed {service} image {ref}")
            parsed = parse_reference(ref)
            repository, tag = parsed.name, parsed.tag or "latest"
            self.client.images.build(path=str(self.ci / "examples" / service), tag=f"{repository}:{tag}",
                                     rm=True, buildargs={"BASE_IMAGE": self.base_image,
                                                         "SOURCE_SHA": "seed"})
            errors = [e["error"] for e in self.client.api.push(repository, tag=tag, stream=True,
                                                                decode=True, auth_config=auth)
                      if "error" in e]
            if errors:
                raise ExternalError(f"cannot push the seed image {ref}: {errors[-1]}")

    def _start_cluster(self) -> None:
        from gitopsctl.harness.kube import FluxOptions, KubeEmulator

        self.progress("starting the Kubernetes API emulator and cluster simulator")
        auth = {self.registry.url: {"username": self.registry.username,
                                    "password": self.registry.password}}
        # The gate as clusters/homelab/flux-system/kustomization.yaml sets it (on); benchmarks
        # turn it off to measure the hold-back.
        flux = FluxOptions(cancel_health_check_on_new_revision=self.settings.cancel_health_check_on_new_revision)
        self.kube = KubeEmulator(self.workdir / "kube", docker_client=self.client, registry_auth=auth,
                                 restart_backoff=self.settings.restart_backoff, max_backoff=2.0, flux=flux)
        self.kube.start()
        self._stack.append(self.kube.stop)
        self.kube.add_git_repository("flux-system", url=self.remote.url, branch="main")
        self.kube.add_kustomization("apps", path=f"./{FRONTEND_APP}", wait=True,
                                    timeout=self.settings.kustomization_timeout)
        try:
            self._wait_http(self.frontend_url, 90, "the seeded frontend never became healthy")
        except ExternalError as exc:
            raise ExternalError(f"{exc.message}; cluster: {self.cluster_summary()}") from None

    def _initial_sync(self) -> None:
        self.progress("syncing the VM (docker compose up)")
        result = self.gitopsctl("sync", cwd=self.vm_checkout, env=self.vm_env(), check=False)
        if result.returncode != 0:
            raise ExternalError("the sandbox VM's first sync failed: "
                                + (result.stderr.strip().splitlines() or ["?"])[-1])
        self._wait_http(self.backend_url, 60, "the seeded backend never became healthy")

    # ------------------------------------------------------------- using it

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
                    "BACKEND_PORT": str(self.backend_port), "NO_COLOR": "1"})
        return env

    def gitopsctl(self, *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None,
                  check: bool = False, timeout: float = 600) -> subprocess.CompletedProcess:
        """Run the real CLI (a subprocess, as CI does) in the CI clone by default."""
        return subprocess.run([sys.executable, "-m", "gitopsctl", *args], cwd=cwd or self.ci,
                              env=dict(env or self.ci_env()), capture_output=True, text=True,
                              timeout=timeout, check=check, stdin=subprocess.DEVNULL)

    def commit_app_change(self, files: Mapping[str, str], message: str) -> str:
        """A developer pushes an app change; returns the source SHA the pipeline builds."""
        from gitopsctl.harness.gitremote import git

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
        """What /version answers on the live service (the SOURCE_SHA it was built from)."""
        import urllib.request

        url = (self.frontend_url if service == "frontend" else self.backend_url).replace("/healthz", "/version")
        try:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(url, timeout=2) as resp:
                return resp.read().decode().strip()
        except OSError:
            return None

    def cluster_summary(self) -> str:
        """One line per Flux object and pod: what a human would ask kubectl for."""
        from gitopsctl.harness.kube.store import GIT_REPOSITORIES, KUSTOMIZATIONS, PODS

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

    @staticmethod
    def _wait_http(url: str, seconds: float, why: str) -> None:
        from gitopsctl.health import probe_http

        deadline = time.monotonic() + seconds
        while not probe_http(url, timeout=1).ok:
            if time.monotonic() > deadline:
                raise ExternalError(f"{why} ({url})")
            time.sleep(0.2)
