"""What homelab a Lab runs: the repository's first tree and the half of gitopsctl.yaml it owns.

A seed says *what* runs (services, their targets' kinds, Kustomizations and compose
file, health checks, stage order); the Lab fills in *where* it runs on this machine
(registry, kubeconfig, the VM's SSH coordinates, its checkout and compose project,
timeouts) and brings the seed live: every seeded image is built from its service's
context (`push_seed_images`), Flux applies the Kustomizations the config names with the
spec the repository's manifests give them (`flux_kustomizations`), the VM syncs, and the
lab waits for the services' own health checks (`wait_seed_healthy`).

Placeholders, replaced in every seeded text file, the config and `vm_env` (both are
plain YAML scalars, so a seed's files stay valid YAML and compose files as they are):

    harbor.lan       the registry a homelab's files name becomes the local registry's host:port
    <port:NAME>      a free loopback port, one per NAME (`Lab.ports[NAME]`)

`sandbox_seed()` is the sandbox's own homelab (frontend on Kubernetes, backend on the
VM: this project's clusters/homelab and examples/, which the wheel carries as package
data, see `seed_source`); `HomelabSeed.from_directory` reads any other from a directory
holding its tree and its gitopsctl.yaml.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

PORT_PLACEHOLDER = re.compile(r"<port:([a-z0-9-]+)>")
REGISTRY_PLACEHOLDER = "harbor.lan"

FRONTEND_APP = "clusters/homelab/apps/frontend"
COMPOSE_FILE = "clusters/homelab/backend-vm/docker-compose.yml"
SEALED_FILE = "clusters/homelab/backend-vm/backend-secrets.sealed.yaml"
DEFAULT_NODE_PORT = "30080"
ROUTE_EXAMPLE_ADDRESS = "192.168.1.50"  # clusters/homelab/routing/backend/endpointslice.yaml


@dataclass(frozen=True)
class HomelabSeed:
    # repo-relative destination -> a file or directory to copy there
    tree: Mapping[str, Path]
    # gitopsctl.yaml without what only the lab knows (see the module docstring)
    config: Mapping[str, Any]
    # environment of every command on the VM (sshd passes it on), placeholders allowed
    vm_env: Mapping[str, str] = field(default_factory=dict)
    # last edits of the staged tree that placeholders cannot say; called as adapt(lab, root)
    adapt: Callable[[Any, Path], None] | None = None

    @classmethod
    def from_directory(cls, directory: Path, **extra: Any) -> "HomelabSeed":
        """A homelab kept as a directory: its gitopsctl.yaml, and every other entry as the tree."""
        from ruamel.yaml import YAML

        directory = Path(directory)
        config = YAML(typ="safe").load((directory / "gitopsctl.yaml").read_text())
        tree = {p.name: p for p in sorted(directory.iterdir())
                if p.name not in ("gitopsctl.yaml", "__pycache__") and not p.name.endswith(".py")}
        return cls(tree=tree, config=config, **extra)

    def port_names(self) -> list[str]:
        """Every NAME a <port:NAME> placeholder asks for, in the tree, the config or vm_env."""
        texts = [json.dumps(self.config), json.dumps(dict(self.vm_env))]
        for source in self.tree.values():
            files = [source] if source.is_file() else [p for p in source.rglob("*") if p.is_file()]
            for path in files:
                try:
                    texts.append(path.read_text())
                except (UnicodeDecodeError, OSError):
                    continue  # binary files carry no placeholders
        return sorted({m.group(1) for text in texts for m in PORT_PLACEHOLDER.finditer(text)})


def fill(text: str, registry: str, ports: Mapping[str, int]) -> str:
    """`text` with every placeholder replaced; an unknown port name is a bug in the seed."""
    text = text.replace(REGISTRY_PLACEHOLDER, registry)
    return PORT_PLACEHOLDER.sub(lambda m: str(ports[m.group(1)]), text)


def fill_tree(root: Path, registry: str, ports: Mapping[str, int]) -> None:
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        new = fill(text, registry, ports)
        if new != text:
            path.write_text(new)


# What the sandbox seeds, relative to a checkout's top or to the package's data/seed/
# (setup.py copies the same paths into the wheel).
SEED_PATHS = ("clusters/homelab", "examples/frontend", "examples/backend")


def seed_source(scratch: Path) -> Path:
    """A directory holding SEED_PATHS: the copy installed with the package, else (a checkout
    or an editable install) the checkout's own files. A package imported from a zip has no
    real files, and docker build needs them: the copy is then extracted into `scratch`."""
    from importlib import resources

    from gitopsctl.errors import ExternalError

    packaged = resources.files("gitopsctl") / "data" / "seed"
    if isinstance(packaged, Path):
        if packaged.is_dir():
            return packaged
    elif packaged.is_dir():
        _extract(packaged, Path(scratch))
        return Path(scratch)
    checkout = Path(__file__).resolve().parents[3]
    if all((checkout / rel).is_dir() for rel in SEED_PATHS):
        return checkout
    raise ExternalError("this gitopsctl has no seed homelab for the sandbox "
                        f"(neither gitopsctl/data/seed nor a checkout's {', '.join(SEED_PATHS)})",
                        hint="install gitopsctl from a wheel, a git URL or a checkout with pip; "
                             "a package built without its setup.py lacks the seed")


def _extract(node: Any, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for child in node.iterdir():
        if child.is_dir():
            _extract(child, dest / child.name)
        else:
            (dest / child.name).write_bytes(child.read_bytes())
            if child.name.endswith((".sh", ".cgi")):
                # importlib's view of a zip has no file modes, and busybox httpd runs a
                # CGI script only when it is executable
                (dest / child.name).chmod(0o755)


def sandbox_seed(source: Path) -> HomelabSeed:
    """The sandbox's homelab: this project's clusters/homelab and examples/, as they are
    (`source` as `seed_source` finds it)."""
    tree = {rel: source / rel for rel in SEED_PATHS}
    return HomelabSeed(tree=tree, config=SANDBOX_CONFIG, vm_env={"BACKEND_PORT": "<port:backend>"},
                       adapt=_adapt_sandbox)


SANDBOX_CONFIG: Mapping[str, Any] = {
    "version": 2,
    "services": {
        "frontend": {"image": "frontend", "context": "examples/frontend", "target": "kubernetes",
                     "policy": "flux-system:frontend", "paths": [FRONTEND_APP],
                     "workloads": [{"kind": "Deployment", "name": "frontend", "namespace": "default"}],
                     "health": [{"http": "http://127.0.0.1:<port:frontend>/healthz"}]},
        "backend": {"image": "backend", "context": "examples/backend", "target": "vm",
                    "policy": "flux-system:backend", "paths": ["clusters/homelab/backend-vm"],
                    "health": [{"http": "http://127.0.0.1:<port:backend>/healthz"}]},
    },
    "targets": {
        # clusters/homelab/{routing,apps}.yaml and image-automation/automation.yaml name these.
        "kubernetes": {"kind": "kubernetes",
                       "kustomizations": [{"name": "routing", "namespace": "flux-system"},
                                          {"name": "apps", "namespace": "flux-system"}],
                       "image_update_automation": {"name": "homelab", "namespace": "flux-system"}},
        "vm": {"kind": "vm", "compose_file": COMPOSE_FILE, "env_file": ".gitopsctl/backend.env",
               "sealed_secrets": [SEALED_FILE]},
    },
    "stage": {"order": ["frontend", "backend"]},
    # The frontend's /api/version asks the backend through the route (routing/backend).
    "consistency": [{"from": "frontend", "to": "backend", "timeout": "8s",
                     "url": "http://127.0.0.1:<port:frontend>/api/version"}],
}


def _adapt_sandbox(lab: Any, staging: Path) -> None:
    """The only differences between clusters/homelab and the sandbox's copy of it, beyond
    harbor.lan becoming the local registry (a placeholder, see the module docstring)."""
    from gitopsctl import sealed

    for path in (staging / "clusters").rglob("*.y*ml"):
        text = path.read_text()
        new = text
        if path.name == "service.yaml" and "frontend" in str(path.parent):
            new = new.replace(f"nodePort: {DEFAULT_NODE_PORT}", f"nodePort: {lab.ports['frontend']}")
        if path.name == "endpointslice.yaml" and path.parent.name == "backend":
            # The route leads to the lab's VM: its backend on loopback at its free port.
            new = new.replace(f'["{ROUTE_EXAMPLE_ADDRESS}"]', '["127.0.0.1"]')
            new = re.sub(r"(?m)^(\s+)port: 80$", rf"\g<1>port: {lab.ports['backend']}", new)
        if path.name == "docker-compose.yml":
            # A sandbox has no patience to spare: probe every second from the start.
            new = re.sub(r"(?m)^(\s+)interval: \S+$", r"\1interval: 1s", new)
            new = re.sub(r"(?m)^(\s+)start_period: \S+$", r"\1start_period: 0s", new)
        if new != text:
            path.write_text(new)
    # The example SealedSecret is sealed for another key; the VM must be able to open it.
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "backend-secrets", "namespace": "backend"},
              "stringData": {"API_TOKEN": secrets.token_urlsafe(16)}}
    manifest = sealed.seal_secret(secret, sealed.load_public_key(lab.vm_cert.read_bytes()),
                                  scope="strict")
    sealed_path = staging / SEALED_FILE
    sealed_path.parent.mkdir(parents=True, exist_ok=True)
    sealed_path.write_text(sealed.dump_manifest(manifest))


def flux_kustomizations(root: Path) -> dict[tuple[str, str], dict]:
    """(namespace, name) -> spec of every Flux Kustomization manifest in the tree at `root`.

    The lab's Flux applies the ones the config names, with the spec the repository gives
    them, as the root Kustomization of a real cluster would create them.
    """
    from ruamel.yaml import YAML

    found: dict[tuple[str, str], dict] = {}
    yaml = YAML(typ="safe")
    for path in sorted(root.rglob("*.y*ml")):
        if ".git" in path.parts:
            continue
        try:
            docs = list(yaml.load_all(path.read_text()))
        except Exception:  # not every YAML file here is a manifest (compose files, configs)
            continue
        for doc in docs:
            if isinstance(doc, dict) and doc.get("kind") == "Kustomization" and \
                    str(doc.get("apiVersion", "")).startswith("kustomize.toolkit.fluxcd.io/"):
                meta = doc.get("metadata") or {}
                found[(meta.get("namespace", "flux-system"), meta.get("name", ""))] = doc.get("spec") or {}
    return found


def push_seed_images(config: Any, repo: Path, client: Any, registry: Any, *, base_image: str,
                     progress: Callable[[str], None]) -> None:
    """Build each service's context in `repo` and push it under every reference its markers
    name, so the seeded homelab starts out live. `client` is a docker.DockerClient."""
    from gitopsctl import setters
    from gitopsctl.errors import ExternalError
    from gitopsctl.imageref import parse_reference

    auth = {"username": registry.username, "password": registry.password}
    for name, service in config.services.items():
        files = setters.yaml_files([repo / p for p in service.paths])
        refs = sorted({m.value for path in files for m in setters.scan_file(path).markers
                       if m.policy == service.policy and m.field == "image"})
        for ref in refs:
            progress(f"building the seed {name} image {ref}")
            parsed = parse_reference(ref)
            repository, tag = parsed.name, parsed.tag or "latest"
            client.images.build(path=str(repo / service.context), dockerfile=service.dockerfile,
                                tag=f"{repository}:{tag}", rm=True,
                                buildargs={"BASE_IMAGE": base_image, "SOURCE_SHA": "seed"})
            errors = [e["error"] for e in client.api.push(repository, tag=tag, stream=True,
                                                           decode=True, auth_config=auth)
                      if "error" in e]
            if errors:
                raise ExternalError(f"cannot push the seed image {ref}: {errors[-1]}")


def wait_seed_healthy(config: Any, kind: str, seconds: float) -> None:
    """Until every http and tcp check of the services on targets of `kind` passes (compose
    checks are the VM's own: its sync waits for them); ExternalError after `seconds`."""
    from gitopsctl.errors import ExternalError
    from gitopsctl.health import probe_check

    deadline = time.monotonic() + seconds
    for target in config.targets_of_kind(kind):
        for service in config.services_on(target):
            for check in config.service(service).health:
                if check.kind not in ("http", "tcp"):
                    continue
                while not (outcome := probe_check(check, timeout=1))[0]:
                    if time.monotonic() > deadline:
                        raise ExternalError(f"the seeded {service} never became healthy ({outcome[1]})")
                    time.sleep(0.2)
