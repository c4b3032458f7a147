"""Which files `gitopsctl check` reviews, and the repository's other YAML it looks things up in.

With gitopsctl.yaml the scope is what the config says gitopsctl and Flux read: every service's
`paths`, every VM target's compose file and sealed secrets, and the trees of the Flux
Kustomizations each Kubernetes target applies (those the target names, and those sourced from
its GitRepository; one whose definition is not in this repository is simply not found). A
homelab keeps its manifests wherever it likes, so nothing here names a directory.

Without a config (a repository that has not adopted gitopsctl yet) the scope is every YAML
file git sees: tracked, and untracked unless ignored. Ignored files never count, so a
virtualenv or build output in the work tree is no finding; a new file is checked before its
first `git add`, as bump would read it.

Files named on the command line (pre-commit passes the staged ones) are checked when they are
in scope and skipped quietly when not: a hook that sees every changed file must not judge the
ones no rule is about.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from gitopsctl import flux, yamlsafe
from gitopsctl.checks.documents import YamlFile, load
from gitopsctl.errors import ExternalError, InputError
from gitopsctl.setters import SkippedLink, flux_reads, read_text, select_yaml

GLOBS = ("*.yaml", "*.yml", "*Kustomization")  # the names setters.flux_reads takes


def git_files(root: Path) -> list[Path] | None:
    """Every YAML file git sees under `root` (absolute, sorted), or None outside a repository.

    A root that gitopsctl takes for a repository (it holds a `.git`) but git cannot read (an
    empty `.git`, a worktree whose link is broken) is walked instead: it is all there is.
    """
    from gitopsctl import repo

    try:
        names = repo.worktree_files(root, GLOBS)
    except (ExternalError, InputError):
        return select_yaml([root], root).files if os.path.lexists(root / ".git") else None
    found = {root / name for name in names if flux_reads(posixpath.basename(name))}
    return sorted(p for p in found if os.path.lexists(p))


class Lookups:
    """The repository's YAML as a place to look things up (ImagePolicies, CRDs, Flux
    Kustomizations), read once and screened by text before parsing.

    A file here that cannot be read, or is hostile, is passed over: it may be out of scope,
    and one in scope is refused when it is loaded for checking.
    """

    _UNREAD = object()

    def __init__(self, root: Path, paths: Iterable[Path]) -> None:
        self.root = root
        self._text: dict[Path, object] = {p.resolve(): self._UNREAD for p in paths}
        self._file: dict[Path, YamlFile | None] = {}

    def register(self, file: YamlFile) -> None:
        key = file.path.resolve()
        self._text[key], self._file[key] = file.text, file

    def file(self, path: Path) -> YamlFile | None:
        key = path.resolve()
        if key not in self._file:
            self._file[key] = None
            if self._read(key) is not None:
                try:
                    self._file[key] = load(key, display(key, self.root))[0]
                except (yamlsafe.HostileInput, InputError):
                    pass
        return self._file[key]

    def files_with(self, needle: str) -> list[YamlFile]:
        out = []
        for key in sorted(self._text):
            text = self._read(key)
            if text is not None and needle in text and (file := self.file(key)) is not None:
                out.append(file)
        return out

    def _read(self, key: Path) -> str | None:
        text = self._text.get(key, self._UNREAD)
        if text is self._UNREAD:
            try:
                text = read_text(key, display(key, self.root))
            except (yamlsafe.HostileInput, InputError, OSError):
                text = None
            self._text[key] = text
        return text  # type: ignore[return-value]


@dataclass
class Scope:
    files: list[Path]                                   # absolute, sorted: what the rules check
    links: list[SkippedLink] = field(default_factory=list)
    compose: set[Path] = field(default_factory=set)     # resolved: the VM targets' compose files
    by_service: dict[str, list[Path]] = field(default_factory=dict)   # resolved marker files
    missing: list[tuple[str, str]] = field(default_factory=list)     # (config key, path)
    described: str = ""

    def restrict(self, selected: Sequence[Path]) -> list[Path]:
        """The files of `selected` that are in scope; the rest is skipped quietly."""
        inside = {p.resolve() for p in self.files}
        return [p for p in selected if p.resolve() in inside]


def whole_repository(root: Path, tracked: Sequence[Path] | None) -> Scope:
    if tracked is None:
        raise InputError(f"{root} is not a git repository: without gitopsctl.yaml, check reviews "
                         "the YAML files git sees",
                         hint="run it inside the repository (or `git init` first), pass the files "
                              "to check, or write a gitopsctl.yaml (`gitopsctl init`)")
    selection = select_yaml(tracked, root)
    return Scope(files=selection.files, links=selection.links,
                 described="every YAML file git sees (no gitopsctl.yaml)")


def from_config(config, root: Path, lookups: Lookups, tracked: Sequence[Path] | None) -> Scope:
    roots: list[Path] = []
    missing: list[tuple[str, str]] = []
    by_service: dict[str, list[Path]] = {}
    compose: set[Path] = set()

    def take(key: str, relative: str) -> Path | None:
        path = config.resolve(relative)
        if not os.path.lexists(path):
            missing.append((key, relative))
            return None
        roots.append(path)
        return path

    for name, target in config.targets_of_kind("vm").items():
        if (path := take(f"targets.{name}.compose_file", target.compose_file)) is not None:
            compose.add(path.resolve())
        for index, secret in enumerate(target.sealed_secrets):
            take(f"targets.{name}.sealed_secrets[{index}]", secret)
    for name, service in config.services.items():
        own = [p for i, rel in enumerate(service.paths)
               if (p := take(f"services.{name}.paths[{i}]", rel)) is not None]
        target = config.targets.get(service.target)
        if getattr(target, "kind", None) == "vm":
            own.append(config.resolve(target.compose_file))
        by_service[name] = [p.resolve() for p in _files_under(own, root, tracked)]
    for tree in kustomization_trees(config, root, lookups):
        roots.append(tree)
    selection = _select(roots, root, tracked)
    return Scope(files=selection[0], links=selection[1], compose=compose, by_service=by_service,
                 missing=missing,
                 described="the services' paths, the VM targets' compose files and sealed "
                           "secrets, and the Kubernetes targets' Flux Kustomizations")


def kustomization_trees(config, root: Path, lookups: Lookups) -> Iterator[Path]:
    """Directories the Kubernetes targets' Flux Kustomizations apply, and the files defining them."""
    named: set[tuple[str, str]] = set()
    sources: set[tuple[str, str]] = set()
    for target in config.targets_of_kind("kubernetes").values():
        named.update((ref.namespace, ref.name) for ref in target.kustomizations)
        sources.add((target.git_repository.namespace, target.git_repository.name))
    for file in lookups.files_with(flux.KUSTOMIZE_API_PREFIX):
        for doc in file.k8s_documents():
            if flux.is_kustomization(doc) and _applied_by_target(doc, named, sources):
                yield file.path
                tree = _tree_of(doc, root)
                if tree is not None:
                    yield tree


def _applied_by_target(doc: dict, named: set, sources: set) -> bool:
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    spec = doc.get("spec") if isinstance(doc.get("spec"), dict) else {}
    name, namespace = meta.get("name"), meta.get("namespace")
    # Without metadata.namespace it takes one from the Kustomization applying it; accept any.
    if any(n == name and namespace in (None, ns) for ns, n in named):
        return True
    source = spec.get("sourceRef") if isinstance(spec.get("sourceRef"), dict) else {}
    if source.get("kind") != "GitRepository":
        return False
    # sourceRef.namespace defaults to the Kustomization's own (fluxcd/kustomize-controller
    # api/v1/reference_types.go, CrossNamespaceSourceReference)
    source_namespace = source.get("namespace") or namespace
    return any(n == source.get("name") and source_namespace in (None, ns) for ns, n in sources)


def _tree_of(doc: dict, root: Path) -> Path | None:
    relative = flux.kustomization_path(doc)
    if relative is None:
        return None
    path = root / relative
    return path if os.path.isdir(path) and not os.path.islink(path) else None


def _select(roots: Sequence[Path], root: Path, tracked: Sequence[Path] | None
            ) -> tuple[list[Path], list[SkippedLink]]:
    """select_yaml over `roots`; the repository's own top is read from git's list instead of
    walked, so what git ignores (a virtualenv, build output) stays out."""
    top = root.resolve()
    walked = [p for p in roots if p.resolve() != top]
    files: set[Path] = set()
    links: dict[str, SkippedLink] = {}
    if len(walked) < len(roots) and tracked is not None:
        sel = select_yaml(tracked, root)
        files.update(sel.files)
        links.update((link.path, link) for link in sel.links)
    if walked:
        sel = select_yaml(_dedupe(walked), root)
        files.update(sel.files)
        links.update((link.path, link) for link in sel.links)
    return sorted(files), [links[k] for k in sorted(links)]


def _files_under(roots: Sequence[Path], root: Path, tracked: Sequence[Path] | None) -> list[Path]:
    existing = [p for p in roots if os.path.lexists(p)]
    return _select(existing, root, tracked)[0] if existing else []


def _dedupe(paths: Iterable[Path]) -> list[Path]:
    return list(dict.fromkeys(Path(os.path.abspath(p)) for p in paths))


def display(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)
