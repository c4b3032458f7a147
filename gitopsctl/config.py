"""gitopsctl.yaml -> frozen dataclasses.

The dataclasses below are the single source of truth: the loader validates against
them, and `schema.py` derives the JSON Schema for editors from them. Every error
names file:line:column, the key, what was expected and an example.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from gitopsctl.errors import ConfigError, Location

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
        "Deadline for a target to become healthy after a deploy", "5m",
        duration=True, minimum=1, maximum=7200))
    http: float = field(default=5.0, metadata=meta("Timeout of one HTTP or TCP health probe", "5s",
                                                    duration=True, minimum=0.1, maximum=300))
    ssh_connect: float = field(default=10.0, metadata=meta("SSH connect timeout", "10s",
                                                           duration=True, minimum=1, maximum=300))
    healthy_samples: int = field(default=3, metadata=meta(
        "Consecutive healthy samples needed before a target counts as healthy", 3,
        minimum=1, maximum=100))


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
    """Read, validate and freeze a config file. Raises ConfigError, never anything else."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    from gitopsctl import yamlsafe
    from gitopsctl.errors import InputError

    path = Path(path)
    try:
        text = yamlsafe.read_text(path, str(path))  # bounded: size, control characters
        yamlsafe.guard_text(text, str(path))        # nesting depth, alias bombs
    except yamlsafe.HostileInput as exc:
        raise yamlsafe.HostileConfig(exc.message, hint=exc.hint, location=exc.location) from None
    except InputError as exc:
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist",
                              hint="create one from examples/gitopsctl.yaml, or pass --config PATH "
                                   "(or set GITOPSCTL_CONFIG)") from None
        raise ConfigError(exc.message, location=exc.location, hint=exc.hint) from None
    yaml = YAML(typ="rt")
    try:
        data = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(str(path), mark.line + 1, mark.column + 1) if mark else Location(str(path))
        raise ConfigError(f"not valid YAML: {exc.problem or exc.context}", location=loc,
                          hint="check indentation and quoting around this position") from None
    except YAMLError as exc:  # unmarked: name only the type, the text may quote a secret
        raise ConfigError(f"not valid YAML ({type(exc).__name__})",
                          location=Location(str(path))) from None
    if data is None:
        data = {}
    loader = _Loader(str(path))
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of keys", location=Location(str(path), 1, 1),
                          hint="start with `registry:`, `services:` and `targets:` (see examples/gitopsctl.yaml)")
    data = _apply_env_overrides(data, environ if environ is not None else os.environ, loader)
    version = data.get("version", 1)
    if version == 1 and not isinstance(version, bool):
        config = _load_v1(data, loader)
    elif version == CURRENT_VERSION and not isinstance(version, bool):
        config = loader.build(Config, data, "", None)
        if not config.stage.groups:
            config = dataclasses.replace(config, stage=dataclasses.replace(
                config.stage, groups=tuple((name,) for name in config.services)))
        _cross_check(config, data, loader)
    else:
        loader.fail(data, "version", "version", f"1 or {CURRENT_VERSION}", CURRENT_VERSION, version)
    return dataclasses.replace(config, path=path.resolve(),
                               root=(root or find_repo_root(path.resolve().parent) or path.resolve().parent))


def _load_v1(data: dict, loader: "_Loader") -> Config:
    from gitopsctl import config_v1

    try:
        old = loader.build(config_v1.ConfigV1, data, "", None)
    except ConfigError as exc:
        if "version" not in data and config_v1.looks_like_v2(data):
            exc.hint = (f"{exc.hint}; " if exc.hint else "") + \
                "this reads like a version 2 file: add `version: 2` at the top"
        raise
    config_v1.cross_check(old, data, loader)
    return config_v1.upgrade(old)


def _apply_env_overrides(data: dict, environ: typing.Mapping[str, str], loader: "_Loader") -> dict:
    """GITOPSCTL_STAGE__DELAY=0 sets stage.delay; the value is parsed as YAML."""
    from ruamel.yaml import YAML

    reserved = {"CONFIG", "REPO", "OUTPUT", "VERBOSE", "NO_COLOR", "KNOWN_HOSTS", "SSH_KEY_FILE"}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        name = key[len(ENV_PREFIX):]
        if name in reserved:
            continue
        parts = [p.lower() for p in name.split("__")]
        node = data
        for i, part in enumerate(parts[:-1]):
            if isinstance(node, dict) and part not in node and part.replace("_", "-") in node:
                # Environment names cannot hold `-`: BACKEND_VM stands for `backend-vm`.
                part = parts[i] = part.replace("_", "-")
            nxt = node.get(part) if isinstance(node, dict) else None
            if not isinstance(nxt, dict):
                from ruamel.yaml.comments import CommentedMap

                nxt = CommentedMap()
                node[part] = nxt
            node = nxt
        value = _env_value(key, raw) if raw.strip() else raw
        node[parts[-1]] = value
        loader.from_env[(id(node), parts[-1])] = key
    return data


def _env_value(key: str, raw: str) -> Any:
    """An override's value, parsed as YAML with the same bounds as a config file."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    from gitopsctl.yamlsafe import HostileInput, guard_text

    try:
        guard_text(raw, f"environment variable {key}")
        return YAML(typ="safe").load(raw)
    except HostileInput as exc:
        raise ConfigError(str(exc), hint=exc.hint) from None
    except YAMLError as exc:
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"environment variable {key}: not a YAML value ({problem})",
                          hint=f"quote it or give a plain value, e.g. {key}=60s") from None


def _position(node: Any, key: Any, *, value: bool = False) -> tuple[int, int] | None:
    lc = getattr(node, "lc", None)
    if lc is None:
        return None
    try:
        if isinstance(node, dict):
            line, col = lc.value(key) if value else lc.key(key)
        else:
            line, col = lc.item(key)
    except (KeyError, TypeError, IndexError, AttributeError):
        return None
    return line + 1, col + 1


class _Loader:
    def __init__(self, filename: str):
        self.filename = filename
        self.from_env: dict[tuple[int, Any], str] = {}

    def where(self, parent: Any, key: Any, *, value: bool = True) -> Location:
        env_name = self.from_env.get((id(parent), key))
        if env_name:
            return Location(f"environment variable {env_name}")
        pos = _position(parent, key, value=value) if parent is not None else None
        if pos is None and parent is not None:
            pos = _position(parent, key, value=False)
        if pos is None:
            line = getattr(getattr(parent, "lc", None), "line", None)
            pos = (line + 1, 1) if line is not None else (1, 1)
        return Location(self.filename, *pos)

    def fail(self, parent: Any, key: Any, dotted: str, expected: str, example: Any,
             got: Any = None, *, value: bool = True) -> typing.NoReturn:
        shown = "" if got is None else f", got {_describe(got)}"
        hint = f"example: {dotted.split('.')[-1]}: {_yaml_example(example)}" if example is not None else None
        raise ConfigError(f"{dotted}: expected {expected}{shown}",
                          location=self.where(parent, key, value=value), hint=hint,
                          details={"key": dotted, "expected": expected})

    def build(self, cls: type, data: Any, prefix: str, parent: Any, key: Any = None):
        hints = typing.get_type_hints(cls)
        if not isinstance(data, dict):
            self.fail(parent, key, prefix or "(top level)", "a mapping", None, data)
        fields = {yaml_key(f): f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
        for k in data:
            if k not in fields:
                close = difflib.get_close_matches(str(k), list(fields), n=1)
                dotted = f"{prefix}.{k}" if prefix else str(k)
                hint = f"did you mean `{close[0]}`?" if close else f"known keys: {', '.join(fields)}"
                raise ConfigError(f"{dotted}: unknown key", location=self.where(data, k, value=False),
                                  hint=hint, details={"key": dotted})
        kwargs = {}
        for name, f in fields.items():
            dotted = f"{prefix}.{name}" if prefix else name
            if name not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    where = self.where(parent, key, value=False) if parent is not None else Location(self.filename, 1, 1)
                    example = f.metadata.get("example")
                    raise ConfigError(f"{dotted}: required key is missing", location=where,
                                      hint=f"add `{name}: {_yaml_example(example)}`" if example is not None
                                      else f"add a `{name}:` section (see examples/gitopsctl.yaml)",
                                      details={"key": dotted})
                continue
            kwargs[f.name] = self.convert(hints[f.name], data[name], dotted, data, name, f.metadata)
        built = cls(**kwargs)
        check = getattr(cls, "_check", None)
        problem = check(built) if check is not None else None
        if problem:
            expected, hint = problem
            raise ConfigError(f"{prefix}: expected {expected}", hint=hint,
                              location=self.where(parent, key, value=False), details={"key": prefix})
        return built

    def convert(self, tp: Any, value: Any, dotted: str, parent: Any, key: Any, md: dict):
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        example = md.get("example")
        if origin in (typing.Union, types.UnionType):
            inner = [a for a in args if a is not type(None)]
            if value is None:
                return None
            if len(inner) > 1:
                return self._variant(inner, value, dotted, parent, key)
            return self.convert(inner[0], value, dotted, parent, key, md)
        if dataclasses.is_dataclass(tp):
            return self.build(tp, value, dotted, parent, key)
        if origin is tuple:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list):
                self.fail(parent, key, dotted, "a list of strings", example, value)
            out = []
            for i, item in enumerate(value):
                out.append(self.convert(args[0], item, f"{dotted}[{i}]", value, i, {}))
            return tuple(out)
        if origin is dict:
            if not isinstance(value, dict):
                self.fail(parent, key, dotted, "a mapping of names", example, value)
            out = {}
            for k, v in value.items():
                if not isinstance(k, str) or not re.match(_NAME_RE, k):
                    self.fail(value, k, f"{dotted}.{k}", "a lowercase name like `frontend`",
                              "frontend", k, value=False)
                out[k] = self.convert(args[1], v, f"{dotted}.{k}", value, k, md)
            return out
        if md.get("duration"):
            return self._duration(value, dotted, parent, key, md)
        if tp is bool:
            if not isinstance(value, bool):
                self.fail(parent, key, dotted, "true or false", example, value)
            return value
        if tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                self.fail(parent, key, dotted, "a whole number", example, value)
            self._range(value, dotted, parent, key, md)
            self._choices(value, dotted, parent, key, md)
            return value
        if tp is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.fail(parent, key, dotted, "a number", example, value)
            self._range(value, dotted, parent, key, md)
            return float(value)
        if tp is str:
            if not isinstance(value, str) or not value.strip():
                self.fail(parent, key, dotted, "a non-empty string", example, value)
            pattern = md.get("pattern")
            if pattern and not re.match(pattern, value):
                self.fail(parent, key, dotted, md.get("expected") or f"a string matching {pattern}",
                          example, None if md.get("conceal") else value)
            self._choices(value, dotted, parent, key, md)
            return str(value)
        raise TypeError(f"unsupported config type {tp!r}")  # a bug in this module, not user input

    def _variant(self, classes: list, value: Any, dotted: str, parent: Any, key: Any):
        """One of several sections, told apart by their `kind:` (like a Kubernetes object)."""
        kinds = {variant_kind(c): c for c in classes}
        if not isinstance(value, dict):
            self.fail(parent, key, dotted, "a mapping", None, value)
        if "kind" not in value:
            raise ConfigError(f"{dotted}.kind: required key is missing",
                              location=self.where(parent, key, value=False),
                              hint=f"add `kind:` with one of: {', '.join(kinds)}",
                              details={"key": f"{dotted}.kind"})
        chosen = kinds.get(value["kind"])
        if chosen is None:
            self.fail(value, "kind", f"{dotted}.kind", "one of " + ", ".join(kinds),
                      next(iter(kinds)), value["kind"])
        return self.build(chosen, value, dotted, parent, key)

    def _duration(self, value, dotted, parent, key, md) -> float:
        seconds = parse_seconds(value)
        if seconds is None:
            self.fail(parent, key, dotted, "a duration: seconds as a number, or like 90s, 5m, 1h",
                      md.get("example"), value)
        self._range(seconds, dotted, parent, key, md, unit="s")
        return seconds

    def _range(self, value, dotted, parent, key, md, unit: str = "") -> None:
        expected = out_of_range(value, md, unit)
        if expected:
            self.fail(parent, key, dotted, expected, md.get("example"), value)

    def _choices(self, value, dotted, parent, key, md) -> None:
        choices = md.get("choices")
        if choices and value not in choices:
            self.fail(parent, key, dotted, "one of " + ", ".join(map(str, choices)),
                      choices[0], value)


def _cross_check(config: Config, data: dict, loader: _Loader) -> None:
    """What one section says about another: stage names, targets, kinds of checks."""
    services = data.get("services") or {}
    stage = data.get("stage") if isinstance(data.get("stage"), dict) else {}
    order = stage.get("order")
    seen: set[str] = set()
    for i, group in enumerate(config.stage.groups):
        for name in group:
            node = order[i] if isinstance(order, list) and isinstance(order[i], list) else order
            where = (node, group.index(name)) if isinstance(node, list) and node is not order \
                else ((order, i) if isinstance(order, list) else (data, "stage"))
            key = f"stage.order[{i}]"
            if name not in config.services:
                raise ConfigError(f"{key}: unknown service {name!r}", location=loader.where(*where),
                                  hint=f"use one of: {', '.join(config.services)}",
                                  details={"key": key})
            if name in seen:
                raise ConfigError(f"{key}: service {name!r} is in the stage order twice",
                                  location=loader.where(*where),
                                  hint="list every service once; a group is one list item",
                                  details={"key": key})
            seen.add(name)
    for name, svc in config.services.items():
        node = services.get(name)
        key = f"services.{name}"
        if svc.target not in config.targets:
            raise ConfigError(f"{key}.target: target {svc.target!r} is not configured",
                              location=loader.where(node, "target"),
                              hint=f"add `targets.{svc.target}:` with a `kind:`, or use one of: "
                                   f"{', '.join(config.targets) or '(none yet)'}",
                              details={"key": f"{key}.target"})
        kind = config.targets[svc.target].kind
        if kind == "kubernetes":
            if not svc.workloads:
                raise ConfigError(f"{key}.workloads: a service on Kubernetes target {svc.target!r} "
                                  "needs at least one workload to follow", location=loader.where(data["services"], name, value=False),
                                  hint="add `workloads: [{kind: Deployment, name: NAME, namespace: NS}]`",
                                  details={"key": f"{key}.workloads"})
            if svc.compose_services:
                raise ConfigError(f"{key}.compose_services: only services on a VM target own compose "
                                  f"services; {svc.target!r} is a Kubernetes target",
                                  location=loader.where(node, "compose_services"),
                                  hint="follow Kubernetes objects with `workloads:` instead",
                                  details={"key": f"{key}.compose_services"})
        else:
            if svc.workloads:
                raise ConfigError(f"{key}.workloads: only services on a Kubernetes target follow "
                                  f"workloads; {svc.target!r} is a VM target",
                                  location=loader.where(node, "workloads"),
                                  hint="name the compose services it owns with `compose_services:`",
                                  details={"key": f"{key}.workloads"})
        for i, check in enumerate(svc.health):
            if check.kind == "compose" and kind != "vm":
                raise ConfigError(f"{key}.health[{i}]: a compose check needs a VM target; "
                                  f"{svc.target!r} is a Kubernetes target",
                                  location=loader.where(node.get("health"), i) if isinstance(node, dict) else None,
                                  hint="use an http or tcp check", details={"key": f"{key}.health[{i}]"})
            if check.kind == "compose" and svc.compose_services and \
                    check.compose not in svc.compose_services:
                raise ConfigError(f"{key}.health[{i}]: compose service {check.compose!r} is not one "
                                  f"of the service's compose_services", location=loader.where(node.get("health"), i),
                                  hint=f"use one of: {', '.join(svc.compose_services)}",
                                  details={"key": f"{key}.health[{i}]"})
    owners: dict[tuple[str, str], str] = {}
    for name, svc in config.services.items():
        for i, compose_service in enumerate(svc.compose_services):
            other = owners.setdefault((svc.target, compose_service), name)
            if other != name:
                raise ConfigError(f"services.{name}.compose_services[{i}]: compose service "
                                  f"{compose_service!r} is already owned by service {other!r}",
                                  location=loader.where(services[name].get("compose_services"), i),
                                  hint="each compose service belongs to one gitopsctl service",
                                  details={"key": f"services.{name}.compose_services[{i}]"})


def yaml_key(f: dataclasses.Field) -> str:
    """The key a field has in gitopsctl.yaml (most often its name)."""
    return f.metadata.get("key", f.name)


def variant_kind(cls: type) -> str:
    """The `kind:` value that selects a section class among several."""
    kind = next(f for f in dataclasses.fields(cls) if f.name == "kind")
    return kind.metadata["choices"][0]


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    return f"{type(value).__name__} {str(value)!r}"


def _yaml_example(example: Any) -> str:
    if isinstance(example, list):
        return "[" + ", ".join(str(e) for e in example) + "]"
    if isinstance(example, bool):
        return "true" if example else "false"
    return str(example)
