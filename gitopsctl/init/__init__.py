"""`gitopsctl init`: a first gitopsctl.yaml from what an existing repository already holds.

    discover.py   read the working tree once: markers, Flux objects, kustomize and compose files
    objects.py    what one parsed document holds (the readers behind discover)
    fluxtree.py   which files each Flux Kustomization applies (as kustomize-controller builds it)
    propose.py    findings -> a version 2 config document, with a note on every guess
    services.py   its services: one per ImagePolicy; targets.py: its targets
    render.py     the document as commented YAML, TODOs where a value is a placeholder

`plan` does all of it and loads the result with the real config loader, so what init
writes is a file `gitopsctl config` accepts, or nothing.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from gitopsctl.errors import GitopsctlError, InputError
from gitopsctl.init.discover import Discovery, discover
from gitopsctl.init.propose import TODO, Proposal, propose
from gitopsctl.init.render import Todo, render


@dataclass
class Plan:
    discovery: Discovery
    proposal: Proposal
    text: str
    todos: list[Todo]


def plan(root: Path) -> Plan:
    """Discover, propose, render and validate; raises InputError when there is nothing to build on."""
    found = discover(root)
    if not found.markers:
        raise InputError(
            f"no Flux setter marker found in {found.root} ({found.files} YAML file(s) read)",
            hint='gitopsctl deploys images at setter markers: mark each image you build, e.g. '
                 'image: harbor.lan/homelab/app:TAG # {"$imagepolicy": "flux-system:app"}, '
                 "then run `gitopsctl init` again; nothing was written",
            details={"files": found.files, "problems": found.problems})
    proposal = propose(found)
    header = [
        "gitopsctl.yaml, written by `gitopsctl init` from this repository: "
        f"{len(found.markers)} setter marker(s), {len(found.kustomizations)} Flux "
        f"Kustomization(s), {len(found.compose_files)} compose file(s).",
        f"A line marked {TODO} holds a placeholder that loads but is not your "
        "value: fill each one, then run `gitopsctl config` and `gitopsctl check`.",
        "Every key: `gitopsctl config --schema`, or docs/configuration.md in the gitopsctl repository.",
    ]
    text, todos = render(proposal, header)
    validate(text, found.root)
    return Plan(found, proposal, text, todos)


def validate(text: str, root: Path) -> None:
    """Load `text` as gitopsctl.yaml of `root`; a refusal here is a bug in init."""
    from gitopsctl import config

    with tempfile.TemporaryDirectory(prefix="gitopsctl-init-") as tmp:
        path = Path(tmp) / config.CONFIG_FILENAME
        path.write_text(text, encoding="utf-8")
        try:
            config.load(path, root=root, environ={})
        except GitopsctlError as exc:
            raise GitopsctlError(f"internal error: the proposed config does not load: {exc}",
                                 hint="this is a bug in gitopsctl init; `gitopsctl init "
                                      "--dry-run` prints what it proposed") from None
