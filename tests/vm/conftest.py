"""The backend VM for tests: a real sshd on 127.0.0.2, the session's real dockerd and
registry, docker compose v2, and a real bare git remote the VM checkout clones from.

Session-scoped: the sshd and the test images (pushed once). Per test: a fresh git
remote and checkout, a unique compose project and a free port for the app, so tests
never share containers or ports with each other or with other sessions.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from gitopsctl.sandbox.lab.ports import free_port
from gitopsctl.sandbox.lab.sshd import SshServer, start_sshd

from tests.fixtures.configs import LAB_TIMEOUTS, lab_vm_target, service, v2_text

VENV_BIN = Path(sys.executable).parent
GITOPSCTL = VENV_BIN / "gitopsctl"

# A tiny app: busybox httpd on 127.0.0.1:$PORT serving /healthz. MODE=crash exits at
# start, MODE=sick serves but has no /healthz, so its healthcheck fails, MODE=flap is
# healthy for a few seconds and then exits (a crash loop `up --wait` does not see).
APP_DOCKERFILE = """\
FROM {base}
ARG MODE=ok
ARG VERSION=1
RUN mkdir -p /www && echo "ok $VERSION" > /www/healthz && echo "$MODE" > /mode
CMD ["sh", "-c", "m=$(cat /mode); echo app starting mode=$m; if [ $m = crash ]; then echo fatal: cannot start >&2; exit 3; fi; if [ $m = sick ]; then rm /www/healthz; fi; if [ $m = flap ]; then httpd -p 127.0.0.1:${{PORT}} -h /www; sleep 3; echo flap: giving up >&2; exit 1; fi; exec httpd -f -p 127.0.0.1:${{PORT}} -h /www"]
"""


@dataclass
class VmImages:
    repository: str               # 127.0.0.1:<port>/homelab/backend
    refs: dict[str, str]          # name -> repository:tag
    digests: dict[str, str]       # name -> sha256:...

    def pinned(self, name: str) -> str:
        return f"{self.refs[name]}@{self.digests[name]}"


@pytest.fixture(scope="session")
def vm_images(docker_client, base_image, registry, tmp_path_factory) -> VmImages:
    build_dir = tmp_path_factory.mktemp("vm-app")
    (build_dir / "Dockerfile").write_text(APP_DOCKERFILE.format(base=base_image))
    repository = f"{registry.url}/homelab/backend"
    docker_client.login(registry.username, registry.password, registry=registry.url, reauth=True)
    refs, digests = {}, {}
    for name, args in {"v1": {"VERSION": "1"}, "v2": {"VERSION": "2"},
                       "sick": {"MODE": "sick"}, "crash": {"MODE": "crash"},
                       "flap": {"MODE": "flap"}}.items():
        ref = f"{repository}:{name}"
        docker_client.images.build(path=str(build_dir), tag=ref, buildargs=args, rm=True)
        events = list(docker_client.api.push(repository, tag=name, stream=True, decode=True))
        errors = [e for e in events if "error" in e]
        assert not errors, errors
        repo_digests = docker_client.images.get(ref).attrs["RepoDigests"]
        refs[name] = ref
        digests[name] = next(d for d in repo_digests if d.startswith(repository + "@")).split("@")[1]
    return VmImages(repository, refs, digests)


@pytest.fixture(scope="session")
def vm_docker_config(registry, tmp_path_factory) -> Path:
    """The VM's own docker config: pull credentials for the registry (as `docker login` writes)."""
    path = tmp_path_factory.mktemp("vm-docker-config")
    auth = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
    (path / "config.json").write_text(json.dumps({"auths": {registry.url: {"auth": auth}}}))
    os.chmod(path / "config.json", 0o600)
    return path


@pytest.fixture(scope="session")
def vm_sshd(docker_engine, vm_docker_config, tmp_path_factory) -> SshServer:
    env = {
        "DOCKER_HOST": docker_engine.docker_host,
        "DOCKER_CONFIG": str(vm_docker_config),
        "PATH": os.pathsep.join([str(VENV_BIN), "/usr/local/bin", "/usr/bin", "/bin",
                                 "/usr/sbin", "/sbin"]),
        "NO_COLOR": "1",
    }
    server = start_sshd(tmp_path_factory.mktemp("vm-sshd"), environment=env)
    try:
        yield server
    finally:
        server.stop()


COMPOSE_TEMPLATE = """\
services:
  backend:
    image: {image}
    network_mode: host
    restart: "{restart}"
    stop_grace_period: 1s
    environment:
      PORT: "{port}"
{extra}    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:{port}/healthz"]
      interval: 1s
      timeout: 2s
      retries: 2
      start_period: 0s
"""


@dataclass
class VmRepo:
    remote: "object"              # gitopsctl.sandbox.lab.gitremote.GitRemote (the CI side clone)
    checkout: Path                # the VM's clone
    project: str
    port: int
    compose_path: str = "deploy/docker-compose.yml"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/healthz"

    def compose_text(self, image: str, restart: str = "no", extra: str = "") -> str:
        return COMPOSE_TEMPLATE.format(image=image, port=self.port, restart=restart, extra=extra)

    def config(self, environ: dict | None = None):
        """The CI side's view of the config (the clone the pipeline runs in)."""
        from gitopsctl import config as config_mod

        return config_mod.load(self.remote.work / "gitopsctl.yaml", root=self.remote.work,
                               environ=environ or {})

    def target(self, environ: dict | None = None, **kwargs):
        from gitopsctl.targets.vm import VMTarget

        return VMTarget(self.config(environ), environ=environ or {}, **kwargs)

    def deploy(self, image: str, restart: str = "no", message: str = "deploy", extra: str = "",
               files: dict | None = None) -> str:
        """Commit a compose file change on the CI side and push it; returns the commit."""
        self.remote.write({self.compose_path: self.compose_text(image, restart, extra), **(files or {})})
        sha = self.remote.commit_all(message)
        self.remote.push()
        return sha


def write_config(path: Path, *, registry_url: str, sshd: SshServer, checkout: Path, project: str,
                 port: int, known_hosts: str | None = None, samples: int = 2) -> None:
    """One service, `backend`, owning the whole compose file of one VM target named `vm`."""
    target = lab_vm_target(sshd, checkout, project=project, compose_file="deploy/docker-compose.yml",
                           remote_command=GITOPSCTL, known_hosts=known_hosts)
    backend = service("backend", "vm", context="app", paths=["deploy"],
                      health=[{"http": f"http://127.0.0.1:{port}/healthz"}])
    path.write_text(v2_text({"backend": backend}, {"vm": target}, registry=registry_url,
                            stage={"delay": 0}, timeouts={**LAB_TIMEOUTS, "healthy_samples": samples})
                    .replace("  project: homelab\n", "  project: homelab\n  insecure: true\n", 1))


@pytest.fixture
def vm_repo(make_git_remote, registry, vm_sshd, vm_images, docker_client, tmp_path) -> VmRepo:
    project = f"vmt{secrets.token_hex(4)}"
    port = free_port()
    checkout = tmp_path / "vm-checkout"
    remote = make_git_remote(files={".gitignore": ".gitopsctl/\n"})
    repo = VmRepo(remote=remote, checkout=checkout, project=project, port=port)
    write_config(remote.work / "gitopsctl.yaml", registry_url=registry.url, sshd=vm_sshd,
                 checkout=checkout, project=project, port=port)
    repo.deploy(vm_images.refs["v1"], message="initial backend")
    remote.clone(checkout)
    try:
        yield repo
    finally:
        _remove_project(docker_client, project)


def _remove_project(client, project: str) -> None:
    for container in client.containers.list(all=True,
                                            filters={"label": f"com.docker.compose.project={project}"}):
        try:
            container.remove(force=True)
        except Exception:  # already gone
            pass




@pytest.fixture
def ci_target(vm_repo, registry, vm_sshd, tmp_path):
    """ci_target(**write_config overrides, edit=callable) -> a VMTarget on a variant config."""
    from gitopsctl import config as config_mod
    from gitopsctl.targets.vm import VMTarget

    def make(edit=None, **kwargs):
        path = tmp_path / f"ci-{secrets.token_hex(3)}.yaml"
        write_config(path, registry_url=registry.url, sshd=vm_sshd, checkout=vm_repo.checkout,
                     project=vm_repo.project, port=vm_repo.port, **kwargs)
        if edit is not None:
            path.write_text(edit(path.read_text()))
        return VMTarget(config_mod.load(path, root=vm_repo.remote.work, environ={}), environ={})

    return make
