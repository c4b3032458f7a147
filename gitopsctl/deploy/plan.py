"""Every edit of a stage, computed from a commit's tree before anything is pushed.

The plan reads files from git (the remote tip a stage deploys onto), never from the
working tree: a dirty checkout, a half-written file left by a kill, or staged work can
neither hide a deploy ("no change") nor leak into one. A plan that cannot be made
(no marker, a malformed marked file, an image nobody built) fails before the first
push, so nothing of the stage is live.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from gitopsctl import repo as gitrepo
from gitopsctl import setters
from gitopsctl.errors import InputError, Location
from gitopsctl.imageref import ImageReference
from gitopsctl.yamlsafe import decode

_TOKEN = setters.FLUX_TOKEN.encode()  # Flux's screen: files without it are never parsed


@dataclass
class ServicePlan:
    service: str
    image: ImageReference
    origin: str                                   # build-record | registry | unbuilt
    files: dict[str, tuple[str, str]] = field(default_factory=dict)   # path -> (mode, new text)
    changes: list[setters.Change] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.files)

    def encoded(self) -> dict[str, tuple[str, bytes]]:
        return {path: (mode, text.encode("utf-8")) for path, (mode, text) in self.files.items()}

    def to_dict(self) -> dict:
        return {"service": self.service, "image": str(self.image), "image_from": self.origin,
                "files": sorted(self.files), "changes": [c.to_dict() for c in self.changes],
                "skipped": self.skipped}


def plan_stage(root, config, tip: str, source: str, services: Sequence[str], *,
               environ: Mapping[str, str], allow_unbuilt: bool = False) -> list[ServicePlan]:
    """One plan per service, in order; each sees the edits of the ones before it."""
    from gitopsctl.deployimage import resolve_image

    plans = []
    edited: dict[str, tuple[str, str]] = {}
    for service in services:
        ref, origin = resolve_image(config, service, source, environ=environ,
                                    allow_unbuilt=allow_unbuilt)
        plan = plan_service(root, config, tip, service, ref, origin, earlier=edited)
        edited.update(plan.files)
        plans.append(plan)
    return plans


def plan_service(root, config, tip: str, service: str, ref: ImageReference, origin: str, *,
                 earlier: Mapping[str, tuple[str, str]] | None = None) -> ServicePlan:
    """The edits that set `service`'s markers to `ref` in the tree of `tip`."""
    svc = config.service(service)
    plan = ServicePlan(service=service, image=ref, origin=origin)
    scope = setters.service_scope(config, service)
    # The files bump reads in a working tree (setters.select_yaml), from the commit.
    entries = [f for f in gitrepo.tree_files(root, tip, scope)
               if setters.tree_selected(f.path, scope)]
    links = [e for e in entries if e.is_link]
    regular = [e for e in entries if not e.is_link and e.mode != gitrepo.SUBMODULE_MODE]
    blobs = gitrepo.read_blobs(root, [e.blob for e in links] +
                               [e.blob for e in regular if not earlier or e.path not in earlier])
    selected = [e.path for e in regular]
    for link in links:
        # Never edited through or replaced; the plan lists every link it leaves alone.
        reason = setters.tree_link_reason(link.path, blobs[link.blob].decode(
            "utf-8", "surrogateescape"), selected)
        plan.skipped.append(f"{link.path}: left alone "
                            f"({reason or 'a link; its target is scanned under its own name'})")
    markers_seen = 0
    for entry in regular:
        if earlier and entry.path in earlier:
            mode, text = earlier[entry.path]
        else:
            data = blobs[entry.blob]
            if _TOKEN not in data:
                continue
            mode, text = entry.mode, decode(data, entry.path)
        scan = setters.scan_for_update(text, entry.path, None, [svc.policy])
        if isinstance(scan, setters.UnreadFile):
            plan.skipped.append(str(scan))
            continue
        # Flux ignores a marker it cannot read, and so does the plan; `check` reports it.
        plan.skipped.extend(f"{m.file}:{m.line}: malformed marker ({m.reason})"
                            for m in scan.malformed)
        markers_seen += sum(1 for m in scan.markers if m.policy == svc.policy)
        file_plan, skipped = setters.plan_file(scan, {svc.policy: ref})
        plan.skipped.extend(f"{s.marker.file}:{s.marker.line}: {s.reason}" for s in skipped)
        if file_plan.changed:
            plan.changes.extend(file_plan.changes)
            plan.files[entry.path] = (mode, file_plan.new_text)
    if not markers_seen:
        raise InputError(f"{service}: no setter marker names {svc.policy} under "
                         f"{', '.join(scope)} at {tip[:7]}",
                         location=Location(scope[0]),
                         hint=f'mark the image field with # {{"$imagepolicy": "{svc.policy}"}}, '
                              "or fix the service's paths in gitopsctl.yaml")
    return plan

