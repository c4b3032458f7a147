"""gitopsctl.yaml -> frozen dataclasses: the model of a homelab (version 2).

The dataclasses below are the single source of truth: the loader (configload.py)
validates against them, and `schema.py` derives the JSON Schema for editors from them.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from gitopsctl.errors import ConfigError

CONFIG_FILENAME = "gitopsctl.yaml"
ENV_PREFIX = "GITOPSCTL_"
_NAME_RE = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_POLICY_RE = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?:[a-z0-9]([-.a-z0-9]*[a-z0-9])?$"
_COMPOSE_NAME_RE = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$"
CURRENT_VERSION = 2
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
HEALTH_KINDS = ("http", "tcp", "compose")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def meta(help: str, example: Any = None, *, pattern: str | None = None,
         choices: tuple | None = None, minimum: float | None = None,
         maximum: float | None = None, duration: bool = False) -> dict:
    return {"help": help, "example": example, "pattern": pattern, "choices": choices,
            "minimum": minimum, "maximum": maximum, "duration": duration}


# ---------------------------------------------------------------- numbers and durations
# One rule for the config file, the environment overrides and the CLI options alike.

def parse_seconds(value: Any) -> float | None:
    """A duration in seconds from a number or `90s`/`5m`/`1h`/`250ms`; None if it is neither.

    NaN and the infinities come back as they are: `out_of_range` refuses them.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:  # an integer too big for a float is far out of any range
            return math.inf
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m:
            factor = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]
            return float(m.group(1)) * factor
    return None


def bounds_text(md: dict, unit: str = "") -> str:
    lo, hi = md.get("minimum"), md.get("maximum")
    if lo is not None and hi is not None:
        return f"a finite value between {lo:g}{unit} and {hi:g}{unit}"
    if lo is not None:
        return f"a finite value of at least {lo:g}{unit}"
    if hi is not None:
        return f"a finite value of at most {hi:g}{unit}"
    return "a finite value"


def out_of_range(value: float, md: dict, unit: str = "") -> str | None:
    """What was expected, when `value` is not finite or outside md's minimum/maximum."""
    lo, hi = md.get("minimum"), md.get("maximum")
    # NaN compares false with every bound, so finiteness is checked first, explicitly.
    finite = isinstance(value, int) or math.isfinite(value)  # ints are; isfinite may overflow
    if not finite or (lo is not None and value < lo) or \
            (hi is not None and value > hi):
        return bounds_text(md, unit)
    return None


def field_metadata(dotted: str) -> dict:
    """The metadata of a config field named like `timeouts.failure` or `targets.vm.port`
    (a name under a map of sections, such as a target's, may be any)."""
    classes: list = [Config]
    md: dict = {}
    parts = dotted.split(".")
    i = 0
    while i < len(parts):
        found = next(((cls, f) for cls in classes for f in dataclasses.fields(cls)
                      if yaml_key(f) == parts[i]), None)
        if found is None:
            raise KeyError(dotted)
        cls, f = found
        md, tp = dict(f.metadata), typing.get_type_hints(cls)[f.name]
        if typing.get_origin(tp) is dict:
            tp, i = typing.get_args(tp)[1], i + 1  # the next part is a name, not a key
        args = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
        classes = [a for a in args if dataclasses.is_dataclass(a)]
        i += 1
    return md


# Deadlines that only the CLI has (no config key): their ranges live here, beside the others.
CLI_DURATIONS: dict[str, dict] = {
    "sandbox.down_timeout": meta("How long `sandbox down` waits for `sandbox up` to clean up",
                                 "120s", duration=True, minimum=1, maximum=3600),
}


def duration_option(option: str, raw: Any, key: str) -> float:
    """Parse a CLI duration option with the same range as config field `key`.

    Raises UsageError (exit 2) naming the option, the range and an example.
    """
    from gitopsctl.errors import UsageError

    md = CLI_DURATIONS.get(key) or field_metadata(key)
    seconds = parse_seconds(raw)
    expected = out_of_range(seconds, md, "s") if seconds is not None else bounds_text(md, "s")
    if expected:
        source = "" if key in CLI_DURATIONS else f", like {key} in gitopsctl.yaml"
        example = md.get("example")
        raise UsageError(f"{option}: expected a duration, {expected}{source}; got {raw!r}",
                         hint=f"e.g. {option} {parse_seconds(example) or example:g} "
                              f"(seconds; 90s, 5m and 1h work too)",
                         details={"option": option, "key": key, "minimum": md.get("minimum"),
                                  "maximum": md.get("maximum")})
    return seconds


@dataclass(frozen=True)
class Author:
    name: str = field(default="gitopsctl", metadata=meta("Commit author name", "gitopsctl"))
    email: str = field(default="gitopsctl@homelab.lan",
                       metadata=meta("Commit author email", "gitopsctl@homelab.lan",
                                     pattern=r"^[^@\s]+@[^@\s]+$"))


@dataclass(frozen=True)
class Registry:
    url: str = field(metadata=meta(
        "Registry host[:port], optionally with http:// or https://", "harbor.lan",
        pattern=r"^(https?://)?[A-Za-z0-9.-]+(:[0-9]+)?/?$"))
    project: str = field(metadata=meta("Harbor project (first path segment of every image)",
                                       "homelab", pattern=r"^[a-z0-9]+([._-][a-z0-9]+)*$"))
    insecure: bool = field(default=False, metadata=meta(
        "Talk plain HTTP to the registry (test registries only)", False))
    username_env: str = field(default="HARBOR_USERNAME", metadata=meta(
        "Name of the environment variable holding the registry user (never the user itself)",
        "HARBOR_USERNAME", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$"))
    password_env: str = field(default="HARBOR_PASSWORD", metadata=meta(
        "Name of the environment variable holding the registry password or robot secret",
        "HARBOR_PASSWORD", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$"))
    tag_template: str = field(default="main-{sha7}-{timestamp}", metadata=meta(
        "Sortable tag for Flux's ImagePolicy; placeholders {sha7} {sha} {timestamp} {branch}",
        "main-{sha7}-{timestamp}", pattern=r"^[A-Za-z0-9_.{}-]+$"))

    @property
    def host(self) -> str:
        return re.sub(r"^https?://", "", self.url).rstrip("/")

    @property
    def scheme(self) -> str:
        if self.url.startswith("http://") or self.insecure:
            return "http"
        return "https"


@dataclass(frozen=True)
class Git:
    # A name, never a URL: a URL may carry a token, and gitopsctl.yaml is committed and printed.
    remote: str = field(default="origin", metadata={
        **meta("Name of the git remote (as in `git remote -v`) to push deploy commits to; "
               "not a URL", "origin", pattern=r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]*$"),
        "expected": "the name of a git remote such as `origin`, not a URL (set the URL and any "
                    "credential in the clone: `git remote add NAME URL`, or a credential helper)",
        "conceal": True})
    branch: str = field(default="main", metadata=meta("Branch Flux and the VM follow", "main",
                                                      pattern=r"^[A-Za-z0-9._/-]+$"))
    author: Author = field(default_factory=Author, metadata=meta("Author of gitopsctl's commits"))
    skip_marker: str = field(default="[skip ci]", metadata=meta(
        "Marker in gitopsctl's commit subjects that stops CI from running on them", "[skip ci]"))
    push_retries: int = field(default=5, metadata=meta(
        "How often a rejected push is rebased and retried", 5, minimum=0, maximum=50))


@dataclass(frozen=True)
class Workload:
    kind: str = field(metadata=meta("Workload kind whose rollout is followed", "Deployment",
                                    choices=WORKLOAD_KINDS))
    name: str = field(metadata=meta("Workload name", "frontend", pattern=_NAME_RE))
    namespace: str = field(default="default", metadata=meta("Namespace", "default",
                                                            pattern=_NAME_RE))

    @property
    def label(self) -> str:
        return f"{self.kind.lower()}/{self.name} in {self.namespace}"


@dataclass(frozen=True)
class HealthCheck:
    http: Optional[str] = field(default=None, metadata=meta(
        "URL that answers 2xx when the service is healthy (probed from where gitopsctl runs)",
        "http://frontend.lan/healthz", pattern=r"^https?://\S+$"))
    tcp: Optional[str] = field(default=None, metadata=meta(
        "host:port that accepts a TCP connection when the service is healthy",
        "backend.lan:5432", pattern=r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$"))
    compose: Optional[str] = field(default=None, metadata=meta(
        "Compose service whose containers must run without restarting and pass their "
        "healthcheck (judged on the VM)", "worker", pattern=_COMPOSE_NAME_RE))

    schema_extra = {"minProperties": 1, "maxProperties": 1}

    @staticmethod
    def _check(check: "HealthCheck") -> str | None:
        given = [k for k in HEALTH_KINDS if getattr(check, k) is not None]
        if len(given) != 1:
            return ("exactly one of http, tcp or compose" + (f", got {' and '.join(given)}" if given else ""),
                    "write one check per list item, e.g. `- http: http://app.lan/healthz` "
                    "then `- tcp: app.lan:5432`")
        return None

    @property
    def kind(self) -> str:
        return next(k for k in HEALTH_KINDS if getattr(self, k) is not None)

    @property
    def url(self) -> str | None:
        return self.http

    @property
    def address(self) -> str | None:
        return self.tcp

    @property
    def service(self) -> str | None:
        return self.compose

    @property
    def label(self) -> str:
        return f"{self.kind} {getattr(self, self.kind)}"


@dataclass(frozen=True)
class Service:
    image: str = field(metadata=meta("Repository name under registry/project", "frontend",
                                     pattern=r"^[a-z0-9]+([._/-][a-z0-9]+)*$"))
    context: str = field(metadata=meta("Build context, relative to the repository root",
                                       "examples/frontend"))
    target: str = field(metadata=meta("Name of the target (a key of `targets`) the service runs on",
                                      "homelab", pattern=_NAME_RE))
    policy: str = field(metadata=meta(
        "Flux ImagePolicy NAMESPACE:NAME that setter markers for this service name",
        "flux-system:frontend", pattern=_POLICY_RE))
    paths: tuple[str, ...] = field(metadata=meta(
        "Files or directories (repo-relative) whose setter markers bump edits",
        ["clusters/homelab/apps/frontend"]))
    dockerfile: str = field(default="Dockerfile", metadata=meta(
        "Dockerfile, relative to the context", "Dockerfile"))
    workloads: tuple[Workload, ...] = field(default=(), metadata=meta(
        "Kubernetes targets only: the Deployments, StatefulSets and DaemonSets to follow",
        [{"kind": "Deployment", "name": "frontend", "namespace": "default"}]))
    compose_services: tuple[str, ...] = field(default=(), metadata=meta(
        "VM targets only: the compose services this service owns (empty: the whole compose file)",
        ["backend"]))
    health: tuple[HealthCheck, ...] = field(default=(), metadata=meta(
        "Health checks that must pass after a deploy, each one of http, tcp or compose "
        "(empty: the workloads' own readiness is the verdict)",
        [{"http": "http://frontend.lan/healthz"}]))


@dataclass(frozen=True)
class ObjectRef:
    name: str = field(metadata=meta("Object name", "flux-system", pattern=_NAME_RE))
    namespace: str = field(default="flux-system", metadata=meta("Namespace", "flux-system",
                                                                pattern=_NAME_RE))


@dataclass(frozen=True)
class KubernetesTarget:
    kind: str = field(metadata=meta("Target kind", "kubernetes", choices=("kubernetes",)))
    git_repository: ObjectRef = field(metadata=meta("Flux GitRepository to reconcile"))
    kustomizations: tuple[ObjectRef, ...] = field(metadata=meta(
        "Flux Kustomizations that apply the target's services, reconciled in this order",
        [{"name": "apps", "namespace": "flux-system"}]))
    kubeconfig: Optional[str] = field(default=None, metadata=meta(
        "Path to the kubeconfig (default: $KUBECONFIG, then ~/.kube/config)", "~/.kube/config"))
    context: Optional[str] = field(default=None, metadata=meta(
        "Kube context to use (default: the kubeconfig's current context)", "homelab"))
    image_update_automation: Optional[ObjectRef] = field(default=None, metadata=meta(
        "Flux ImageUpdateAutomation writing the same fields; rollback suspends it"))

    @staticmethod
    def _check(target: "KubernetesTarget") -> str | None:
        return None if target.kustomizations else (
            "at least one Kustomization", "add `kustomizations: [{name: apps, namespace: flux-system}]`, "
                                          "the Flux Kustomization that applies the services")


@dataclass(frozen=True)
class VMTarget:
    kind: str = field(metadata=meta("Target kind", "vm", choices=("vm",)))
    host: str = field(metadata=meta("SSH host of the VM", "backend.lan",
                                    pattern=r"^[A-Za-z0-9.:-]+$"))
    user: str = field(metadata=meta("SSH user on the VM", "deploy",
                                    pattern=r"^[a-z_][a-z0-9_-]*$"))
    compose_file: str = field(metadata=meta("Compose file path inside the repository",
                                            "clusters/homelab/backend-vm/docker-compose.yml"))
    port: int = field(default=22, metadata=meta("SSH port", 22, minimum=1, maximum=65535))
    identity_file: Optional[str] = field(default=None, metadata=meta(
        "Private key for SSH (default: $GITOPSCTL_SSH_KEY_FILE, then ssh's defaults)",
        "~/.ssh/id_ed25519"))
    known_hosts: str = field(default="~/.ssh/known_hosts", metadata=meta(
        "known_hosts file used for strict host-key checking", "~/.ssh/known_hosts"))
    known_hosts_env: str = field(default="GITOPSCTL_KNOWN_HOSTS", metadata=meta(
        "Environment variable whose content, when set, is used as known_hosts",
        "GITOPSCTL_KNOWN_HOSTS", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$"))
    checkout: str = field(default="/opt/homelab", metadata=meta(
        "Path of the repository checkout on the VM", "/opt/homelab", pattern=r"^/\S*$"))
    compose_project: str = field(default="homelab", metadata=meta(
        "docker compose project name", "homelab", pattern=_NAME_RE))
    env_file: str = field(default=".gitopsctl/backend.env", metadata=meta(
        "Env file sync writes the unsealed secrets to (relative to the checkout)",
        ".gitopsctl/backend.env"))
    sealed_secrets: tuple[str, ...] = field(default=(), metadata=meta(
        "SealedSecret files (repo-relative) unsealed into the env file",
        ["clusters/homelab/backend-vm/backend-secrets.sealed.yaml"]))
    unseal_key: str = field(default="/etc/gitopsctl/sealing-key.pem", metadata=meta(
        "The VM's private sealing key", "/etc/gitopsctl/sealing-key.pem"))
    remote_command: str = field(default="gitopsctl", metadata=meta(
        "gitopsctl executable on the VM", "/opt/gitopsctl/bin/gitopsctl", pattern=r"^[\w./-]+$"))
    sync_interval: float = field(default=300.0, metadata=meta(
        "How often the systemd timer syncs the VM", "5m", duration=True, minimum=10,
        maximum=86400))


TargetConfig = typing.Union[KubernetesTarget, VMTarget]


@dataclass(frozen=True)
class Stage:
    # The YAML key is `order`; `order` in code is the flat list, the groups are `groups`.
    groups: tuple[tuple[str, ...], ...] = field(default=(), metadata={**meta(
        "Deploy order; a list item that is itself a list is a group of services that deploy "
        "together (default: every service alone, in the order of `services`)",
        ["frontend", ["api", "worker"]]), "key": "order"})
    delay: float = field(default=60.0, metadata=meta(
        "Pause after a group is healthy before the next one starts", "60s",
        duration=True, minimum=0, maximum=3600))

    @property
    def order(self) -> tuple[str, ...]:
        return tuple(name for group in self.groups for name in group)


@dataclass(frozen=True)
class Timeouts:
    failure: float = field(default=300.0, metadata=meta(
        "Deadline for a stage group (every service in it) to become healthy after a deploy, "
        "and for each service after a rollback", "5m",
        duration=True, minimum=1, maximum=7200))
    http: float = field(default=5.0, metadata=meta("Timeout of one HTTP or TCP health probe", "5s",
                                                    duration=True, minimum=0.1, maximum=300))
    ssh_connect: float = field(default=10.0, metadata=meta("SSH connect timeout", "10s",
                                                           duration=True, minimum=1, maximum=300))
    healthy_samples: int = field(default=3, metadata=meta(
        "Consecutive healthy samples needed before a target counts as healthy", 3,
        minimum=1, maximum=100))
    sample_interval: float = field(default=0.5, metadata=meta(
        "Pause between two health samples: a service must stay healthy for "
        "(healthy_samples - 1) x sample_interval before it counts as healthy", "500ms",
        duration=True, minimum=0.05, maximum=60))


@dataclass(frozen=True)
class Consistency:
    # `from` is a Python keyword: the YAML keys are from/to, the fields caller/callee.
    caller: str = field(metadata={**meta(
        "The service asked: it answers `url` by asking `to` (e.g. the frontend, through its "
        "route to the backend)", "frontend", pattern=_NAME_RE), "key": "from"})
    callee: str = field(metadata={**meta(
        "The service whose version the answer must name: the source just deployed to it",
        "backend", pattern=_NAME_RE), "key": "to"})
    url: str = field(metadata=meta(
        "URL on `from` that answers the version of `to` it reaches (probed from where "
        "gitopsctl runs)", "http://frontend.lan/api/version", pattern=r"^https?://\S+$"))
    field_name: Optional[str] = field(default=None, metadata={**meta(
        "When the answer is JSON: the dotted key holding the version (default: the answer's "
        "first word is the version)", "backend.version",
        pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"), "key": "field"})
    timeout: float = field(default=30.0, metadata=meta(
        "How long the answer may take to name the deployed version (it is asked every second)",
        "30s", duration=True, minimum=1, maximum=600))

    @property
    def label(self) -> str:
        return f"{self.caller}→{self.callee}"


@dataclass(frozen=True)
class Config:
    registry: Registry = field(metadata=meta("The image registry (Harbor)"))
    services: dict[str, Service] = field(metadata=meta("Services by name (any lowercase names)"))
    targets: dict[str, TargetConfig] = field(metadata=meta(
        "Where services run, by name: each a Kubernetes cluster reconciled by Flux "
        "(kind: kubernetes) or a VM running docker compose (kind: vm)"))
    version: int = field(default=CURRENT_VERSION, metadata=meta(
        "Config format version (1 still loads; `gitopsctl config --migrate` prints its v2 form)",
        CURRENT_VERSION, choices=(1, CURRENT_VERSION)))
    git: Git = field(default_factory=Git, metadata=meta("Git settings"))
    stage: Stage = field(default_factory=Stage, metadata=meta("Stage order and delay"))
    timeouts: Timeouts = field(default_factory=Timeouts, metadata=meta("Deadlines"))
    consistency: tuple[Consistency, ...] = field(default=(), metadata=meta(
        "Pairs of services that must agree after every deploy: `from` is asked, at `url`, which "
        "version of `to` it reaches, and it must be the source just deployed (a mismatch or a "
        "failing route rolls back every service)",
        [{"from": "frontend", "to": "backend", "url": "http://frontend.lan/api/version"}]))
    state_dir: str = field(default=".gitopsctl", metadata=meta(
        "Git-ignored directory (repo-relative) for build records and locks", ".gitopsctl"))
    # Not read from the file: where it was loaded from, and the version it was written in.
    path: Optional[Path] = field(default=None, compare=False, metadata={"internal": True})
    root: Optional[Path] = field(default=None, compare=False, metadata={"internal": True})
    source_version: int = field(default=CURRENT_VERSION, compare=False, metadata={"internal": True})

    def service(self, name: str) -> Service:
        try:
            return self.services[name]
        except KeyError:
            raise ConfigError(f"no service named {name!r} in {self.path}",
                              hint=f"known services: {', '.join(sorted(self.services))}") from None

    def target(self, name: str) -> TargetConfig:
        try:
            return self.targets[name]
        except KeyError:
            raise ConfigError(f"no target named {name!r} in {self.path}",
                              hint=f"known targets: {', '.join(sorted(self.targets))}") from None

    def target_of(self, service: str) -> TargetConfig:
        return self.target(self.service(service).target)

    def services_on(self, target: str) -> tuple[str, ...]:
        """The services bound to a target, in stage order."""
        return tuple(s for s in self.stage.order if self.services[s].target == target)

    def targets_of_kind(self, kind: str) -> dict[str, TargetConfig]:
        return {name: t for name, t in self.targets.items() if t.kind == kind}

    def image_repository(self, service: str) -> str:
        """registry-host/project/image, the name part of the service's image references."""
        return f"{self.registry.host}/{self.registry.project}/{self.service(service).image}"

    def resolve(self, relative: str) -> Path:
        """A repo-relative path from the config made absolute."""
        base = self.root or (self.path.parent if self.path else Path.cwd())
        return (base / relative).resolve()


# ---------------------------------------------------------------- loading

def find_repo_root(start: Path) -> Path | None:
    for candidate in [start, *start.parents]:
        if (candidate / ".git").exists():
            return candidate
    return None


def default_config_path(cwd: Path | None = None) -> Path:
    cwd = (cwd or Path.cwd()).resolve()
    root = find_repo_root(cwd)
    return (root or cwd) / CONFIG_FILENAME


def load(path: Path | str, *, root: Path | None = None,
         environ: typing.Mapping[str, str] | None = None) -> Config:
    """Read, validate and freeze a config file (gitopsctl/configload.py). Raises ConfigError."""
    from gitopsctl.configload import load_file

    return load_file(path, root=root, environ=environ)


def yaml_key(f: dataclasses.Field) -> str:
    """The key a field has in gitopsctl.yaml (most often its name)."""
    return f.metadata.get("key", f.name)


def variant_kind(cls: type) -> str:
    """The `kind:` value that selects a section class among several."""
    kind = next(f for f in dataclasses.fields(cls) if f.name == "kind")
    return kind.metadata["choices"][0]
