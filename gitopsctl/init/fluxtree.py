"""Which files each Flux Kustomization applies, and which Kustomization tree a file is in.

kustomize-controller builds spec.path the way fluxcd/pkg kustomize/kustomize_generator.go
(findOrGenerateKustomization, scanManifests) says: a directory with a kustomization file
is built from it (its resources, components and bases, recursively; its patches are read
too, so a marker in a patch belongs to it); a directory without one gets a generated
kustomization listing every .yaml/.yml file below it, where a sub-directory holding a
kustomization file is taken as one resource and not descended. Remote bases are not
followed: nothing in them is this repository's.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from gitopsctl.checks.documents import KUSTOMIZATION_NAMES
from gitopsctl.init.discover import Discovery
from gitopsctl.init.objects import FluxKustomization

_MAX_DIRECTORIES = 10_000  # a resource cycle or a huge tree stops here, not in a hang


@dataclass
class Build:
    """What one Flux Kustomization reads: files applied and the kustomize namespace on each."""

    applies: dict[str, str | None] = field(default_factory=dict)   # file -> namespace override
    reads: set[str] = field(default_factory=set)                   # kustomization and patch files
    directories: set[str] = field(default_factory=set)

    @property
    def files(self) -> set[str]:
        return set(self.applies) | self.reads


def build(found: Discovery, directory: str) -> Build:
    out = Build()
    _build_dir(found, directory, None, out)
    return out


def _is_remote(resource: str) -> bool:
    return "://" in resource or resource.startswith(("github.com/", "git@", "ssh:"))


def _join(directory: str, relative: str) -> str:
    return posixpath.normpath(posixpath.join(directory, relative))


def _build_dir(found: Discovery, directory: str, namespace: str | None, out: Build) -> None:
    if directory in out.directories or len(out.directories) >= _MAX_DIRECTORIES:
        return
    out.directories.add(directory)
    kfile = found.kustomize_files.get(directory)
    if kfile is None:
        _generated(found, directory, namespace, out)
        return
    # an outer kustomization's namespace overrides every inner one
    namespace = namespace or kfile.namespace
    out.reads.add(kfile.file)
    out.reads.update(_join(directory, p) for p in kfile.patches)
    for resource in kfile.resources:
        if _is_remote(resource):
            continue
        path = _join(directory, resource)
        if path in found.directories:
            _build_dir(found, path, namespace, out)
        else:
            out.applies.setdefault(path, namespace)


def _generated(found: Discovery, directory: str, namespace: str | None, out: Build) -> None:
    prefix = "" if directory == "." else directory + "/"
    nested = sorted(d for d in found.kustomize_files if d != directory and d.startswith(prefix))
    for d in nested:
        # only the outermost kustomization directories below: each is one resource
        if not any(o != d and d.startswith(o + "/") for o in nested):
            _build_dir(found, d, namespace, out)
    for file in found.manifest_files:
        if file.startswith(prefix) and posixpath.basename(file) not in KUSTOMIZATION_NAMES \
                and not any(file.startswith(d + "/") for d in nested):
            out.applies.setdefault(file, namespace)


@dataclass
class Tree:
    """The Flux Kustomizations found, what each builds, and which applies which.

    Keyed by the objects themselves, not their names: every cluster of a multi-cluster
    repository has its own flux-system/flux-system.
    """

    builds: dict[FluxKustomization, Build]
    parent: dict[FluxKustomization, FluxKustomization]

    def root(self, kustomization: FluxKustomization) -> FluxKustomization:
        seen = {kustomization}
        while kustomization in self.parent and self.parent[kustomization] not in seen:
            kustomization = self.parent[kustomization]
            seen.add(kustomization)
        return kustomization

    def owners(self, file: str) -> list[FluxKustomization]:
        """The Kustomizations that build `file`, the deepest spec.path first."""
        found = [k for k, b in self.builds.items() if file in b.files]
        return sorted(found, key=lambda k: (-len(k.path), k.file))

    def namespace_of(self, owner: FluxKustomization, file: str) -> str | None:
        """The namespace kustomize sets on `file`'s objects: targetNamespace, then kustomize."""
        return owner.target_namespace or self.builds[owner].applies.get(file)

    def bootstraps_itself(self, kustomization: FluxKustomization) -> bool:
        """flux-system applies the directory holding its own definition (flux bootstrap)."""
        return kustomization.file in self.builds[kustomization].applies


def tree(found: Discovery) -> Tree:
    builds = {k: build(found, k.path) for k in found.kustomizations}
    parent: dict[FluxKustomization, FluxKustomization] = {}
    for k in found.kustomizations:
        for other, b in builds.items():
            if other != k and k.file in b.applies:
                parent.setdefault(k, other)
    return Tree(builds, parent)
