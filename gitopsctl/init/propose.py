"""Turn what discover.py found into a version 2 config, with a note on every guess.

One service per ImagePolicy its markers name, bound to the target whose files hold the
markers: a Kubernetes target per Flux Kustomization tree (the one `flux bootstrap`
roots in clusters/<name>), a VM target per compose file. What the repository cannot
say (SSH host and user, where the build context is) gets a value that loads, and a
TODO note saying how to fill it.
"""

from __future__ import annotations

import posixpath
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from gitopsctl.errors import InputError
from gitopsctl.imageref import parse_reference
from gitopsctl.init import fluxtree
from gitopsctl.init.discover import Discovery
from gitopsctl.init.objects import ComposeFile, FluxKustomization

TODO = "TODO(gitopsctl init)"
PLACEHOLDER_HOST = "CHANGE-ME.lan"
PLACEHOLDER_USER = "change-me"
PLACEHOLDER_CONTEXT = "CHANGE-ME"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
IMAGE_NAME = re.compile(r"^[a-z0-9]+([._/-][a-z0-9]+)*$")
_SAMPLE_TAG = "main-1a2b3c4-1764160000"   # what the default tag_template makes


@dataclass(frozen=True)
class Note:
    text: str
    todo: bool = False
    example: str | None = None   # a YAML line shown as is, ready to uncomment


KeyPath = tuple  # a key path into the document, e.g. ("targets", "homelab", "host")


@dataclass
class Proposal:
    document: dict
    notes: dict[KeyPath, list[Note]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def note(self, path: KeyPath, text: str, *, todo: bool = False,
             example: str | None = None) -> None:
        self.notes.setdefault(tuple(path), []).append(Note(text, todo, example))

    @property
    def todos(self) -> list[tuple[KeyPath, str]]:
        return [(p, n.text) for p, notes in self.notes.items() for n in notes if n.todo]


def name_for(text: str, fallback: str) -> str:
    """A config name (lowercase, digits, dashes) made from `text`."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)[:63].strip("-")
    return name if _NAME.match(name) else fallback


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    taken.add(candidate)
    return candidate


@dataclass
class Group:
    """The markers of one policy in one target's files."""

    policy: str
    target: str
    files: list[str] = field(default_factory=list)
    values: list[tuple[str, str]] = field(default_factory=list)   # (field, value)
    owners: list = field(default_factory=list)       # FluxKustomizations
    compose: ComposeFile | None = None
    shared: set[str] = field(default_factory=set)   # marked files other trees apply as well


class _Binder:
    """Which target a marked file belongs to, naming each target the first time it is seen."""

    def __init__(self, found: Discovery, flux: fluxtree.Tree):
        self.flux = flux
        self.compose_of = {c.file: c for c in found.compose_files}
        self.taken: set[str] = set()
        self.clusters: dict[FluxKustomization, str] = {}   # tree root -> target name
        self.vms: dict[str, str] = {}                     # compose file -> target name
        self.owners: dict[str, list[FluxKustomization]] = {}   # target -> its Kustomizations
        self._stand_in: str | None = None

    def bind(self, file: str) -> tuple[str, list[FluxKustomization], list[str]] | None:
        """(target, the Kustomization applying `file`, other trees applying it), or None."""
        if file in self.compose_of:
            if file not in self.vms:
                base = posixpath.basename(posixpath.dirname(file))
                self.vms[file] = _unique(name_for(base, "vm"), self.taken)
            return self.vms[file], [], []
        owners = self.flux.owners(file)
        if not owners:
            return None
        root = self.flux.root(owners[0])
        if root not in self.clusters:
            # flux bootstrap's root applies its own directory: clusters/<name>
            base = posixpath.basename(root.path) if self.flux.bootstraps_itself(root) \
                else root.ref.name
            self.clusters[root] = _unique(name_for(base, "kubernetes"), self.taken)
        target = self.clusters[root]
        kustomizations = self.owners.setdefault(target, [])
        if owners[0] not in kustomizations:
            kustomizations.append(owners[0])
        others = sorted({self.flux.root(o).file for o in owners} - {root.file})
        return target, owners[:1], others

    def stand_in(self) -> str:
        """The target for files no Flux Kustomization applies: the first cluster, else a new one."""
        if self._stand_in is None:
            self._stand_in = next(iter(self.clusters.values()), None) or \
                _unique("kubernetes", self.taken)
            self.owners.setdefault(self._stand_in, [])
        return self._stand_in


def propose(found: Discovery) -> Proposal:
    from gitopsctl.init import services as services_mod, targets as targets_mod

    flux = fluxtree.tree(found)
    binder = _Binder(found, flux)
    proposal = Proposal({}, skipped=list(found.problems))
    groups: dict[tuple[str, str], Group] = {}
    unowned: list[str] = []
    bound = [(marker, binder.bind(marker.file)) for marker in found.markers]
    for marker, where in bound:
        if where is None:   # after every cluster is named, so the stand-in can be one of them
            unowned.append(marker.file)
            where = (binder.stand_in(), [], [])
        target, owners, others = where
        group = groups.setdefault((marker.policy, target), Group(
            marker.policy, target, compose=binder.compose_of.get(marker.file)))
        if marker.file not in group.files:
            group.files.append(marker.file)
        group.values.append((marker.field, marker.value))
        group.owners += [o for o in owners if o not in group.owners]
        if others:
            group.shared.add(f"{marker.file} is applied by the trees of {', '.join(others)} too")
    if unowned:
        proposal.note(("targets", binder.stand_in()),
                      f"{', '.join(sorted(set(unowned)))}: no Flux Kustomization in this "
                      "repository applies these files, so they were bound to this target",
                      todo=True)

    services, registry = services_mod.services(found, flux, groups, proposal)
    targets: dict[str, dict] = {}
    for name, kustomizations in binder.owners.items():
        targets[name] = targets_mod.kubernetes(found, name, kustomizations, groups, proposal)
    for file, name in binder.vms.items():
        targets[name] = targets_mod.vm(found, binder.compose_of[file], name, proposal)
    # the clusters first: a broken cluster deploy then stops before any VM changes
    order = sorted(services, key=lambda s: (targets[services[s]["target"]]["kind"] != "kubernetes",
                                            services[s]["target"], s))
    proposal.document.update({
        "version": 2,
        "registry": registry,
        "git": {"remote": "origin", "branch": targets_mod.branch(found, targets) or "main"},
        "services": {s: services[s] for s in order},
        "targets": targets,
        "stage": {"order": order, "delay": "60s"},
    })
    _tag_template(found, proposal, {g.policy for g in groups.values()})
    return proposal


def _tag_template(found: Discovery, proposal: Proposal, policies: set[str]) -> None:
    """Flag policies whose filterTags.pattern the default tag_template never matches."""
    proposal.document["registry"]["tag_template"] = "main-{sha7}-{timestamp}"
    misses = []
    for policy in found.policies:
        if f"{policy.ref.namespace}:{policy.ref.name}" not in policies:
            continue
        where = f"{policy.ref} ({policy.file})"
        if policy.ordering == "semver":   # a semver policy drops every tag that is not one
            misses.append(f"{where} orders by semver")
            continue
        if not policy.tag_pattern:
            continue
        try:
            matched = re.search(policy.tag_pattern, _SAMPLE_TAG) is not None
        except re.error:   # Go's RE2 syntax that Python does not read: say so, do not guess
            matched = False
        if not matched:
            misses.append(f"{where} filters tags by {policy.tag_pattern}")
    if misses:
        proposal.note(("registry", "tag_template"),
                      f"builds are tagged like {_SAMPLE_TAG}, which the policy {'; '.join(misses)} "
                      "does not take: make the template produce tags it takes, or Flux will not "
                      "see new builds", todo=True)


def split_image(text: str) -> tuple[str, str, str] | None:
    """(registry host, project, image) of a reference or repository, or None."""
    try:
        ref = parse_reference(text)
    except InputError:
        return None
    host = ref.domain or "docker.io"
    project, _, image = ref.path.partition("/")
    if not image:
        project, image = ("library", project) if host == "docker.io" else ("", project)
    return host, project, image


def most_common(values: list[Any]) -> Any:
    return Counter(values).most_common(1)[0][0] if values else None
