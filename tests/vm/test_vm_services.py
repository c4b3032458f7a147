"""Several gitopsctl services on one VM target, each judged by its own checks, and several
VM targets: real sshd, dockerd, registry and docker compose, config version 2."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from gitopsctl import config as config_mod
from gitopsctl.errors import ConfigError, UsageError
from gitopsctl.sandbox.lab.ports import free_port
from gitopsctl.systemd import render_units
from gitopsctl.targets.vm import VMTarget

from tests.fixtures.configs import dump, lab_vm_target
from tests.vm.conftest import GITOPSCTL, _remove_project

WORKER_OK = "echo worker up; exec sleep 100000"
WORKER_CRASH = "echo worker starting; sleep 1; echo worker: lost the queue >&2; exit 5"

API = """\
  api:
    image: {image}
    network_mode: host
    restart: "no"
    stop_grace_period: 1s
    environment:
      PORT: "{port}"
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:{port}/healthz"]
      interval: 1s
      timeout: 2s
      retries: 2
      start_period: 0s
"""
WORKER = """\
  worker:
    image: {image}
    network_mode: host
    restart: "{restart}"
    stop_grace_period: 1s
    command: ["sh", "-c", "{script}"]
"""


def vm_section(name: str, sshd, checkout: Path, project: str, compose_file: str) -> str:
    target = lab_vm_target(sshd, checkout, project=project, compose_file=compose_file,
                           remote_command=GITOPSCTL)
    return textwrap.indent(dump({name: target}), "  ")


def config_text(registry_url: str, services: str, targets: str, order: str) -> str:
    return textwrap.dedent(f"""\
        version: 2
        registry:
          url: {registry_url}
          project: homelab
          insecure: true
        stage:
          order: {order}
          delay: 0
        timeouts:
          failure: 60s
          http: 2s
          ssh_connect: 5s
          healthy_samples: 3
        """) + "services:\n" + textwrap.indent(textwrap.dedent(services), "  ") + \
        "targets:\n" + targets


@dataclass
class Homelab:
    remote: object
    checkout: Path
    project: str
    port: int
    images: object

    def compose(self, worker: str = WORKER_OK, restart: str = "no", image: str = "v1") -> str:
        ref = self.images.refs[image]
        return "services:\n" + API.format(image=ref, port=self.port) + \
            WORKER.format(image=ref, restart=restart, script=worker)

    def deploy(self, files: dict, message: str) -> str:
        self.remote.write(files)
        sha = self.remote.commit_all(message)
        self.remote.push()
        return sha

    def config(self):
        return config_mod.load(self.remote.work / "gitopsctl.yaml", root=self.remote.work,
                               environ={})


def two_services(health_api: str, health_worker: str) -> str:
    return f"""\
        api:
          image: backend
          context: app
          target: homelab-vm
          policy: flux-system:api
          paths: [deploy]
          compose_services: [api]
          health: {health_api}
        worker:
          image: backend
          context: app
          target: homelab-vm
          policy: flux-system:worker
          paths: [deploy]
          compose_services: [worker]
          health: {health_worker}
        """


@pytest.fixture
def homelab(make_git_remote, registry, vm_sshd, vm_images, docker_client, tmp_path):
    """homelab(health_api, health_worker) -> a Homelab with api + worker in one compose file."""
    made = []

    def make(health_api: str, health_worker: str) -> Homelab:
        lab = Homelab(remote=make_git_remote(files={".gitignore": ".gitopsctl/\n"}),
                      checkout=tmp_path / f"vm-checkout-{len(made)}",
                      project=f"vms{secrets.token_hex(4)}", port=free_port(), images=vm_images)
        made.append(lab)
        health_api = health_api.format(port=lab.port)
        text = config_text(registry.url, two_services(health_api, health_worker),
                           vm_section("homelab-vm", vm_sshd, lab.checkout, lab.project,
                                      "deploy/docker-compose.yml"), "[[api, worker]]")
        lab.deploy({"gitopsctl.yaml": text, "deploy/docker-compose.yml": lab.compose()}, "initial")
        lab.remote.clone(lab.checkout)
        return lab

    try:
        yield make
    finally:
        for lab in made:
            _remove_project(docker_client, lab.project)


def _failed(report):
    return next(c for c in report.checks if not c.ok)


def test_two_services_in_one_compose_file_each_judged_by_its_own_checks(homelab):
    lab = homelab("[{{http: 'http://127.0.0.1:{port}/healthz'}}]", "[{compose: worker}]")
    target = VMTarget(lab.config(), environ={})   # the only VM target
    assert target.name == "homelab-vm" and target.services == ("api", "worker")
    sha = lab.remote.head()
    report = target.deploy(sha, time.monotonic() + 90)
    assert report.healthy, report.to_dict()
    names = {c.name for c in report.checks if c.ok}
    assert {"api: containers", "api: http", "api: http-ci", "worker: compose"} <= names
    assert not [c for c in report.checks if c.name.startswith("worker: http")]  # no HTTP asked
    worker_check = next(c for c in report.checks if c.name == "worker: compose")
    assert "no healthcheck" in worker_check.message and f"{lab.project}-worker-1" in worker_check.message
    remote = report.details["remote"]
    assert remote["target"] == "homelab-vm"
    assert [(s["name"], s["healthy"]) for s in remote["services"]] == [("api", True), ("worker", True)]
    # each service's own view of the same run
    worker = target.for_service("worker").wait_healthy(sha, time.monotonic() + 30)
    assert worker.healthy and worker.target == "worker"
    assert {c.name for c in worker.checks} == {"worker: compose"}
    api = target.for_service("api").wait_healthy(sha, time.monotonic() + 30)
    assert api.healthy and {"api: http", "api: http-ci"} <= {c.name for c in api.checks}


def test_a_restarting_worker_fails_that_service_by_name(homelab):
    lab = homelab("[{{http: 'http://127.0.0.1:{port}/healthz'}}]", "[{compose: worker}]")
    target = VMTarget(lab.config(), environ={})
    assert target.deploy(lab.remote.head(), time.monotonic() + 90).healthy
    bad = lab.deploy({"deploy/docker-compose.yml": lab.compose(WORKER_CRASH, restart="always")},
                     "deploy a worker that loses its queue")
    start = time.monotonic()
    report = target.deploy(bad, time.monotonic() + 90)
    took = time.monotonic() - start
    assert not report.healthy
    assert took < 30, f"restart loop detection took {took:.1f}s"
    assert report.reason.startswith("worker: "), report.reason
    failed = next(c for c in report.checks if not c.ok and c.name.startswith("worker: "))
    assert failed.name == "worker: compose"
    assert f"{lab.project}-worker-1" in failed.message
    assert "restart" in failed.message or "exited" in failed.message, failed.message
    assert any("worker: lost the queue" in line for line in failed.evidence)
    # the api's own checks did not fail: the service named is the worker
    assert not [c for c in report.checks if not c.ok and c.name.startswith("api: ")
                and c.name != "api: containers"]
    worker = target.for_service("worker").wait_healthy(bad, time.monotonic() + 30)
    assert not worker.healthy and _failed(worker).name == "worker: compose"
    doc = report.details["remote"]
    assert {s["name"]: s["healthy"] for s in doc["services"]}["worker"] is False


def test_tcp_checks_and_a_service_with_no_checks_at_all(homelab, docker_client):
    lab = homelab("[{{tcp: '127.0.0.1:{port}'}}]", "[]")
    target = VMTarget(lab.config(), environ={})
    report = target.deploy(lab.remote.head(), time.monotonic() + 90)
    assert report.healthy, report.to_dict()
    by_name = {c.name: c for c in report.checks}
    assert by_name["api: tcp"].ok and "connection accepted" in by_name["api: tcp"].message
    assert by_name["api: tcp-ci"].ok
    # no health checks: the worker's containers are its verdict
    assert by_name["worker: containers"].ok and "running" in by_name["worker: containers"].message
    # one look from CI cannot see the worker: it asks the VM, read-only
    look = target.for_service("worker").check_health()
    assert look.healthy and [c.name for c in look.checks if c.name.startswith("worker: ")] == \
        ["worker: containers"]

    closed = free_port()
    config = lab.config()
    text = (lab.remote.work / "gitopsctl.yaml").read_text().replace(
        f"tcp: '127.0.0.1:{lab.port}'", f"tcp: '127.0.0.1:{closed}'")
    sha = lab.deploy({"gitopsctl.yaml": text}, "api: probe a port nothing listens on")
    narrow = VMTarget(lab.config(), "homelab-vm", environ={}, wait_timeout=6)
    assert narrow.services == config.services_on("homelab-vm")
    start = time.monotonic()
    report = narrow.deploy(sha, time.monotonic() + 60)
    assert not report.healthy
    assert time.monotonic() - start < 30
    assert report.reason.startswith(f"api: not healthy before the deadline: tcp 127.0.0.1:{closed}"), \
        report.reason
    services = {s["name"]: s for s in report.details["remote"]["services"]}
    assert services["api"]["healthy"] is False and services["worker"]["healthy"] is True


# ----------------------------------------------------------------- two VM targets

def _run_sync(checkout: Path, docker_engine, vm_docker_config, *args: str):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITOPSCTL_")}
    env.update(docker_engine.env(), DOCKER_CONFIG=str(vm_docker_config), NO_COLOR="1")
    return subprocess.run([str(GITOPSCTL), "--repo", str(checkout), "--output", "json", "sync",
                           "--wait-timeout", "60", *args],
                          capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def two_vms(make_git_remote, registry, vm_sshd, vm_images, docker_client, tmp_path):
    """One repository, two VM targets (two checkouts on the same sshd host), one service each."""
    remote = make_git_remote(files={".gitignore": ".gitopsctl/\n"})
    vms = {}
    for name in ("vm-a", "vm-b"):
        vms[name] = {"checkout": tmp_path / f"checkout-{name}", "port": free_port(),
                     "project": f"vm2{secrets.token_hex(3)}{name[-1]}",
                     "compose_file": f"deploy/{name}.yml"}
    services = "".join(textwrap.dedent(f"""\
        svc-{name[-1]}:
          image: backend
          context: app
          target: {name}
          policy: flux-system:svc-{name[-1]}
          paths: [deploy/{name}.yml]
          health: [{{http: 'http://127.0.0.1:{vm["port"]}/healthz'}}]
        """) for name, vm in vms.items())
    targets = "".join(vm_section(name, vm_sshd, vm["checkout"], vm["project"], vm["compose_file"])
                      for name, vm in vms.items())
    files = {"gitopsctl.yaml": config_text(registry.url, services, targets, "[svc-a, svc-b]")}
    for vm in vms.values():
        files[vm["compose_file"]] = "services:\n" + API.format(image=vm_images.refs["v1"],
                                                               port=vm["port"])
    remote.write(files)
    remote.commit_all("two VMs")
    remote.push()
    for vm in vms.values():
        remote.clone(vm["checkout"])
    try:
        yield remote, vms
    finally:
        for vm in vms.values():
            _remove_project(docker_client, vm["project"])


def _running(docker_client, project: str) -> list[str]:
    return [c.name for c in docker_client.containers.list(
        filters={"label": f"com.docker.compose.project={project}"})]


def test_sync_needs_target_when_there_are_several_vms(two_vms, docker_engine, vm_docker_config,
                                                       docker_client):
    remote, vms = two_vms
    a = vms["vm-a"]
    proc = _run_sync(a["checkout"], docker_engine, vm_docker_config)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error = json.loads(proc.stdout)["error"]
    assert "2 VM targets" in error["message"]
    assert "--target" in error["hint"] and "vm-a" in error["hint"] and "vm-b" in error["hint"]
    assert _running(docker_client, a["project"]) == []

    wrong = _run_sync(a["checkout"], docker_engine, vm_docker_config, "--target", "nope")
    assert wrong.returncode == 2 and "vm-a, vm-b" in json.loads(wrong.stdout)["error"]["hint"]

    proc = _run_sync(a["checkout"], docker_engine, vm_docker_config, "--target", "vm-a")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["target"] == "vm-a" and [s["name"] for s in doc["services"]] == ["svc-a"]
    assert _running(docker_client, a["project"]) == [f"{a['project']}-api-1"]
    assert _running(docker_client, vms["vm-b"]["project"]) == []
    status = json.loads((a["checkout"] / ".gitopsctl" / "sync-status-vm-a.json").read_text())
    assert status["target"] == "vm-a" and status["healthy"] is True


def test_ci_syncs_each_vm_target_by_name(two_vms, docker_client):
    remote, vms = two_vms
    config = config_mod.load(remote.work / "gitopsctl.yaml", root=remote.work, environ={})
    with pytest.raises(ConfigError) as err:
        VMTarget(config, environ={})
    assert "vm-a" in err.value.hint and "vm-b" in err.value.hint
    report = VMTarget(config, "vm-b", environ={}).deploy(remote.head(), time.monotonic() + 90)
    assert report.healthy, report.to_dict()
    assert report.target == "vm-b" and report.details["remote"]["target"] == "vm-b"
    assert {c.name for c in report.checks} >= {"svc-b: http", "svc-b: http-ci", "svc-b: containers"}
    assert _running(docker_client, vms["vm-b"]["project"]) == [f"{vms['vm-b']['project']}-api-1"]
    assert _running(docker_client, vms["vm-a"]["project"]) == []


def test_systemd_units_per_vm_target(two_vms):
    remote, vms = two_vms
    config = config_mod.load(remote.work / "gitopsctl.yaml", root=remote.work, environ={})
    units = render_units(config, "vm-a")
    assert sorted(units) == ["gitopsctl-sync-vm-a.service", "gitopsctl-sync-vm-a.timer"]
    service = units["gitopsctl-sync-vm-a.service"]
    assert f"ExecStart={GITOPSCTL} --repo {vms['vm-a']['checkout']} sync --target vm-a\n" in service
    assert "Unit=gitopsctl-sync-vm-a.service\n" in units["gitopsctl-sync-vm-a.timer"]
    assert "${" not in service + units["gitopsctl-sync-vm-a.timer"]
    with pytest.raises(UsageError) as err:
        render_units(config)
    assert "vm-a, vm-b" in err.value.hint


def test_a_compose_service_the_file_does_not_define_fails_its_owner(homelab):
    lab = homelab("[{{http: 'http://127.0.0.1:{port}/healthz'}}]", "[]")
    text = (lab.remote.work / "gitopsctl.yaml").read_text().replace(
        "compose_services: [worker]", "compose_services: [wrkr]")
    sha = lab.deploy({"gitopsctl.yaml": text}, "worker: a typo in its compose service")
    start = time.monotonic()
    report = VMTarget(lab.config(), environ={}).deploy(sha, time.monotonic() + 60)
    assert not report.healthy and time.monotonic() - start < 20
    assert report.reason == "worker: compose service wrkr is not defined in the compose file"
    services = {s["name"]: s for s in report.details["remote"]["services"]}
    assert services["worker"]["healthy"] is False


def test_a_target_name_that_comes_with_the_revision(vm_repo, registry, vm_sshd, vm_images,
                                                     docker_engine, vm_docker_config):
    """CI asks for `--target homelab-vm` in the commit that renames the VM's target: the
    name is looked up in that commit's config, and a wrong name moves nothing."""
    from gitopsctl.sandbox.lab.gitremote import git

    services = f"""\
        backend:
          image: backend
          context: app
          target: homelab-vm
          policy: flux-system:backend
          paths: [deploy]
          health: [{{http: '{vm_repo.health_url}'}}]
        """
    text = config_text(registry.url, services, vm_section("homelab-vm", vm_sshd, vm_repo.checkout,
                                                          vm_repo.project, vm_repo.compose_path),
                       "[backend]")
    before = git(vm_repo.checkout, "rev-parse", "HEAD")
    sha = vm_repo.deploy(vm_images.refs["v1"], message="name the VM target",
                         files={"gitopsctl.yaml": text})
    typo = _run_sync(vm_repo.checkout, docker_engine, vm_docker_config, "--target", "homelab-vn",
                     "--revision", sha)
    assert typo.returncode == 2, typo.stdout + typo.stderr
    assert "homelab-vm" in json.loads(typo.stdout)["error"]["hint"]
    assert git(vm_repo.checkout, "rev-parse", "HEAD") == before
    proc = _run_sync(vm_repo.checkout, docker_engine, vm_docker_config, "--target", "homelab-vm",
                     "--revision", sha)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["target"] == "homelab-vm" and doc["revision"] == sha
    assert [s["name"] for s in doc["services"]] == ["backend"]
