"""Read an existing repository once and list what `gitopsctl init` can build a config from.

Nothing here decides anything: it records the setter markers (through gitopsctl.setters,
so a marker is found exactly where bump and Flux find one), the Flux objects, the
kustomize files, the compose files, the workloads whose images carry a marker, the
NodePort Services in front of them, and the directories holding a Dockerfile.
propose.py turns that into a config.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from gitopsctl import yamlsafe
from gitopsctl.checks.documents import COMPOSE_NAMES, KUSTOMIZATION_NAMES, parse_documents
from gitopsctl.errors import InputError
from gitopsctl.init.objects import (Automation, ComposeFile, FluxKustomization, GitRepository,
                                    ImagePolicy, ImageRepository, KustomizeFile, NodePortService,
                                    Workload,
                                    compose_file, kustomize_file, read_object)
from gitopsctl.setters import FLUX_TOKEN, TOKEN, Marker, NotYaml, flux_reads, read_text, scan_text, walks_into

DOCKERFILES = ("Dockerfile", "Containerfile")
# Never a homelab's manifests, and big enough to make a walk slow: a virtualenv (it has
# pyvenv.cfg), node_modules, and gitopsctl's own state directory.
_NOT_MANIFESTS = ("node_modules", ".gitopsctl")


@dataclass
class Discovery:
    root: Path
    files: int = 0
    markers: list[Marker] = field(default_factory=list)
    kustomizations: list[FluxKustomization] = field(default_factory=list)
    git_repositories: list[GitRepository] = field(default_factory=list)
    policies: list[ImagePolicy] = field(default_factory=list)
    repositories: list[ImageRepository] = field(default_factory=list)
    automations: list[Automation] = field(default_factory=list)
    workloads: list[Workload] = field(default_factory=list)
    node_ports: list[NodePortService] = field(default_factory=list)
    kustomize_files: dict[str, KustomizeFile] = field(default_factory=dict)  # by directory
    compose_files: list[ComposeFile] = field(default_factory=list)
    sealed_secrets: list[str] = field(default_factory=list)
    dockerfile_dirs: list[str] = field(default_factory=list)
    directories: set[str] = field(default_factory=set)
    manifest_files: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "files": self.files,
            "markers": [{"file": m.file, "line": m.line, "policy": m.policy, "field": m.field,
                         "value": m.value} for m in self.markers],
            "kustomizations": [{"name": k.ref.name, "namespace": k.ref.namespace, "path": k.path,
                                "source": f"{k.source_kind}/{k.source}", "file": k.file}
                               for k in self.kustomizations],
            "git_repositories": [{"name": g.ref.name, "namespace": g.ref.namespace,
                                  "branch": g.branch, "file": g.file}
                                 for g in self.git_repositories],
            "image_policies": [{"name": p.ref.name, "namespace": p.ref.namespace,
                                "image_repository": str(p.repository), "file": p.file}
                               for p in self.policies],
            "image_repositories": [{"name": r.ref.name, "namespace": r.ref.namespace,
                                    "image": r.image, "file": r.file} for r in self.repositories],
            "image_update_automations": [{"name": a.ref.name, "namespace": a.ref.namespace,
                                          "update_path": a.update_path, "suspended": a.suspended,
                                          "file": a.file} for a in self.automations],
            "workloads": [{"kind": w.kind, "name": w.name, "namespace": w.namespace,
                           "policies": list(w.policies), "file": w.file} for w in self.workloads],
            "compose_files": [{"file": c.file, "services": {
                s.name: {"image": s.image, "policies": list(s.policies)} for s in c.services}}
                for c in self.compose_files],
            "kustomize_files": sorted(k.file for k in self.kustomize_files.values()),
            "dockerfile_dirs": self.dockerfile_dirs,
            "problems": self.problems,
        }


def discover(root: Path) -> Discovery:
    """Walk the working tree at `root` (not only what is committed: init runs before that)."""
    root = Path(root).resolve()
    found = Discovery(root=root)
    for path in _walk(root, found):
        found.files += 1
        _read_file(path, _relative(path, root), found)
    found.dockerfile_dirs.sort()
    return found


def _walk(root: Path, found: Discovery):
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if walks_into(d) and d not in _NOT_MANIFESTS
                            and not os.path.isfile(os.path.join(directory, d, "pyvenv.cfg"))
                            and not os.path.islink(os.path.join(directory, d)))
        rel_dir = _relative(Path(directory), root)
        found.directories.add(rel_dir)
        if any(n in DOCKERFILES or n.endswith((".Dockerfile", ".dockerfile")) for n in names):
            found.dockerfile_dirs.append(rel_dir)
        for name in sorted(names):
            path = Path(directory, name)
            if flux_reads(name) and not path.is_symlink() and path.is_file():
                yield path


def _relative(path: Path, root: Path) -> str:
    rel = os.path.relpath(path, root).replace(os.sep, "/")
    return posixpath.normpath(rel)


def _read_file(path: Path, display: str, found: Discovery) -> None:
    if path.stat().st_size > yamlsafe.MAX_FILE_BYTES and \
            not yamlsafe.contains(path, FLUX_TOKEN.encode(), display):
        # a generated bundle (CRDs) holds nothing init uses; a marked one is refused below
        found.problems.append(f"{display}: skipped, over {yamlsafe.MAX_FILE_BYTES >> 20} MiB "
                              "and holds no setter marker")
        return
    try:
        text = read_text(path, display)
    except yamlsafe.HostileInput:
        raise
    except InputError as exc:
        found.problems.append(f"{display}: skipped, {exc.message}")
        return
    markers: list[Marker] = []
    if TOKEN in text:
        try:
            markers = scan_text(text, display, path).markers
        except NotYaml as exc:
            found.problems.append(f"{exc.location or display}: skipped, {exc.message}")
            return
    else:
        yamlsafe.guard_text(text, display)
    try:
        documents = parse_documents(text)
    except Exception as exc:  # noqa: BLE001 - PyYAML's errors and duplicate keys
        found.problems.append(f"{display}: skipped, not valid YAML ({type(exc).__name__})")
        return
    found.markers += markers
    name = path.name
    if name in KUSTOMIZATION_NAMES and documents and isinstance(documents[0], dict):
        kustomize_file(documents[0], display, found)
        return
    if _is_compose(name, documents):
        compose_file(documents[0], display, markers, found)
        return
    found.manifest_files.add(display)
    for index, doc in enumerate(documents):
        if isinstance(doc, dict) and isinstance(doc.get("kind"), str):
            read_object(doc, display, [m for m in markers if m.document == index], found)


def _is_compose(name: str, documents: list) -> bool:
    if name in COMPOSE_NAMES or (name.startswith(("docker-compose.", "compose."))):
        return bool(documents) and isinstance(documents[0], dict)
    # shaped like a compose project; a gitopsctl.yaml has `services:` too, and `targets:`
    return len(documents) == 1 and isinstance(documents[0], dict) and \
        isinstance(documents[0].get("services"), dict) and \
        not {"kind", "targets", "registry"} & set(documents[0])


