"""The deploy engine on a real git remote (a bare repository in tmp_path) with in-memory targets.

A homelab here is: a v2 gitopsctl.yaml, one setter-marked file per Kubernetes service and one
compose file per VM target (its services' markers side by side), committed and pushed. The
targets are `FakeTargets`: per service a script of verdicts (the first wait gets the first
one, and so on; healthy once the script runs out) and one shared log of every call.
"""

from __future__ import annotations

import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gitopsctl import repo as gitrepo
from gitopsctl.commands import Context
from gitopsctl.errors import ExternalError
from gitopsctl.health import Check, HealthReport
from gitopsctl.sandbox.lab.gitremote import GitRemote, git, make_git_remote

from tests.fixtures.configs import kube_target, v2_text, vm_target
from tests.fixtures.configs import service as service_entry

REGISTRY = "127.0.0.1:5000/homelab"


class Killed(BaseException):
    """What kill -9 does to a run: nothing of gitopsctl's handling sees it."""


# ---------------------------------------------------------------- the homelab in git

@dataclass
class Homelab:
    remote: GitRemote
    services: dict[str, str]                      # service -> target name
    kinds: dict[str, str]                         # target name -> kubernetes | vm

    @property
    def work(self) -> Path:
        return self.remote.work

    def context(self) -> Context:
        return Context(repo=self.work, config_path=self.work / "gitopsctl.yaml", environ={})

    def app_commit(self, text: str) -> str:
        """A developer's app commit, pushed: the source a stage deploys."""
        self.remote.write({"app/version.txt": text + "\n"})
        sha = self.remote.commit_all(f"app: {text}")
        self.remote.push()
        return sha

    def written(self, since: str) -> list[dict]:
        """Commits on the remote after `since`, oldest first: subject, trailers, files."""
        out = []
        for sha in git(self.remote.bare, "rev-list", "--reverse", f"{since}..refs/heads/main").split():
            subject = git(self.remote.bare, "log", "-1", "--format=%s", sha)
            trailers = git(self.remote.bare, "log", "-1", "--format=%(trailers:only,unfold)", sha)
            files = git(self.remote.bare, "diff-tree", "--no-commit-id", "--name-only", "-r", sha)
            out.append({"sha": sha, "subject": subject, "files": files.split(),
                        "trailers": [t for t in trailers.splitlines() if t]})
        return out

    def file_at_tip(self, path: str) -> str:
        return git(self.remote.bare, "show", f"refs/heads/main:{path}")

    def refuse_pushes(self, subject_prefix: str) -> None:
        """A pre-receive hook refusing any pushed commit whose subject starts so."""
        hook = self.remote.bare / "hooks" / "pre-receive"
        hook.write_text(textwrap.dedent(f"""\
            #!/bin/sh
            while read old new ref; do
              if git log --format=%s "$old..$new" | grep -q '^{subject_prefix}'; then
                echo "policy: commits starting '{subject_prefix}' are not accepted here" >&2
                exit 1
              fi
            done
            """))
        hook.chmod(0o755)

    def allow_pushes(self) -> None:
        (self.remote.bare / "hooks" / "pre-receive").unlink()


def marker_file(service: str, tag: str = "old") -> str:
    return textwrap.dedent(f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: {service}
        spec:
          template:
            spec:
              containers:
                - name: {service}
                  image: {REGISTRY}/{service}:{tag} # {{"$imagepolicy": "flux-system:{service}"}}
        """)


def compose_file(services: list[str]) -> str:
    lines = ["services:"]
    for service in services:
        lines += [f"  {service}:",
                  f"    image: {REGISTRY}/{service}:old # {{\"$imagepolicy\": \"flux-system:{service}\"}}"]
    return "\n".join(lines) + "\n"


AUTOMATION = textwrap.dedent("""\
    apiVersion: image.toolkit.fluxcd.io/v1
    kind: ImageUpdateAutomation
    metadata:
      name: {name}
      namespace: flux-system
    spec:
      interval: 5m
      update:
        path: ./other
        strategy: Setters
    """)


def config_text(services: dict[str, str], kinds: dict[str, str], groups: list[list[str]], *,
                automations: dict[str, str] | None = None, consistency: list[dict] | None = None) -> str:
    """A v2 gitopsctl.yaml; `automations` maps a Kubernetes target to its automation's name."""
    entries = {}
    for name, target in services.items():
        if kinds[target] == "kubernetes":
            entries[name] = service_entry(name, target, workloads=[{"kind": "Deployment", "name": name}])
        else:
            entries[name] = service_entry(name, target, paths=[f"deploy/{target}/compose.yaml"],
                                    compose_services=[name])
    targets = {}
    for target, kind in kinds.items():
        if kind == "kubernetes":
            automation = (automations or {}).get(target)
            targets[target] = kube_target(kustomizations=[{"name": target}],
                                          **({"image_update_automation": {"name": automation}} if automation else {}))
        else:
            targets[target] = vm_target(compose_file=f"deploy/{target}/compose.yaml")
    extra = {"consistency": consistency} if consistency else {}
    return v2_text(entries, targets, stage={"order": [g[0] if len(g) == 1 else g for g in groups],
                                            "delay": "0s"}, timeouts={"failure": "2s", "http": "1s"},
                   **extra)


def make_homelab(tmp_path: Path, services: dict[str, str], kinds: dict[str, str],
                 groups: list[list[str]], *, automations: dict[str, str] | None = None,
                 consistency: list[dict] | None = None) -> Homelab:
    files = {"gitopsctl.yaml": config_text(services, kinds, groups, automations=automations,
                                           consistency=consistency),
             ".gitignore": ".gitopsctl/\n"}
    for service, target in services.items():
        if kinds[target] == "kubernetes":
            files[f"deploy/{service}/deployment.yaml"] = marker_file(service)
    for target, kind in kinds.items():
        if kind == "vm":
            files[f"deploy/{target}/compose.yaml"] = compose_file(
                [s for s, t in services.items() if t == target])
    for target, name in (automations or {}).items():
        files[f"flux/{target}/automation.yaml"] = AUTOMATION.format(name=name)
    return Homelab(make_git_remote(tmp_path, files=files), dict(services), dict(kinds))


# ---------------------------------------------------------------- in-memory targets

def verdict(service: str, kind: str) -> HealthReport:
    """A report such as a real target writes for `kind`."""
    if kind == "healthy":
        return HealthReport(target=service, healthy=True, checks=[Check("http", True, "200 OK")])
    if kind == "unhealthy":
        return HealthReport(target=service, healthy=False, reason=f"{service} HTTP health: 503",
                            checks=[Check("http", False, "http://127.0.0.1/healthz: 503")])
    if kind == "bystander":  # every check of its own passes; the shared target failed
        return HealthReport(target=service, healthy=False,
                            reason=f"{service}: not confirmed healthy when another service failed",
                            checks=[Check("http", True, "200 OK")])
    if kind == "crashloop":
        return HealthReport(target=service, healthy=False,
                            reason=f"{service} pod {service}-7d9c CrashLoopBackOff (restarts 3)",
                            checks=[Check("pods", False, f"{service}-7d9c CrashLoopBackOff",
                                          ["panic: config key missing", "exit code 2"])],
                            details={"restarts": 3})
    raise ValueError(kind)


@dataclass
class FakeTarget:
    service: str
    target: str
    owner: "FakeTargets"
    script: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.service

    def apply(self, revision: str, deadline: float) -> None:
        self.owner.calls.append(("apply", self.target, revision))
        if self.target in self.owner.apply_fails:
            raise ExternalError(f"{self.target}: ssh: connection refused",
                                hint="is the VM up?")

    def wait_healthy(self, revision: str, deadline: float) -> HealthReport:
        assert deadline > time.monotonic(), "the engine passes a deadline in the future"
        self.owner.calls.append(("wait", self.service, revision))
        self.owner.deadlines[self.service] = deadline
        step = self.script.pop(0) if self.script else "healthy"
        if step == "kill":
            raise Killed()
        if step == "raises":
            raise ExternalError(f"{self.service}: Kubernetes API failing: 500")
        if step == "slow":
            time.sleep(0.2)
            step = "healthy"
        return verdict(self.service, step)

    def check_health(self) -> HealthReport:
        self.owner.calls.append(("check", self.service))
        return verdict(self.service, self.owner.later.get(self.service, "healthy"))

    def observe(self, deadline: float, mismatch=None) -> HealthReport:
        self.owner.calls.append(("observe", self.service))
        return verdict(self.service, self.owner.later.get(self.service, "healthy"))


class FakeTargets:
    """A TargetSet of FakeTargets over a homelab's bindings; `calls` records everything."""

    def __init__(self, lab: Homelab, scripts: dict[str, list[str]] | None = None, *,
                 later: dict[str, str] | None = None, apply_fails: set[str] | None = None):
        self.lab = lab
        self.calls: list[tuple] = []
        self.deadlines: dict[str, float] = {}  # service -> the deadline its wait was given
        self.later = dict(later or {})          # service -> verdict of one look
        self.apply_fails = set(apply_fails or ())
        self._targets = {s: FakeTarget(s, t, self, list((scripts or {}).get(s, [])))
                         for s, t in lab.services.items()}

    def target_name(self, service: str) -> str:
        return self.lab.services[service]

    def for_service(self, service: str) -> FakeTarget:
        return self._targets[service]

    def prepare(self, connect: bool = True) -> None:
        self.calls.append(("prepare",))

    def of(self, kind: str) -> list[tuple]:
        return [c for c in self.calls if c[0] == kind]


def remote_tip(lab: Homelab) -> str:
    return lab.remote.remote_head()


def deploy_records(lab: Homelab):
    return [r for r in gitrepo.deploy_log(lab.remote.bare, "refs/heads/main")]


@pytest.fixture
def lab_factory(tmp_path):
    def make(services, kinds, groups, **kw):
        return make_homelab(tmp_path / f"lab{len(list(tmp_path.iterdir()))}", services, kinds,
                            groups, **kw)
    return make
