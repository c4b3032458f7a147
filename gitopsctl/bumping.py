"""gitopsctl bump: set image references at Flux setter markers, commit, push.

Two ways to say what to set:
  --policy NS:NAME=IMAGE_REF [--path DIR]   explicit values (paths default to the config's)
  --service S --source SHA                  pipeline: the image `gitopsctl build` recorded,
                                            else the one the registry has for the source's
                                            sha7 tag; neither is exit 2 unless --allow-unbuilt

Either way an image `check` would refuse (no tag, or `:latest` without a digest) is
refused here too (GOC005 unpinned-image).

Every file is parsed and every edit computed in memory before anything is written, so
a bad file or a bad reference leaves the tree untouched. Each service gets its own
commit (deploy message + trailers); they are pushed together, rebased and retried on a
moving branch, never forced.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from gitopsctl import setters
from gitopsctl.deployimage import ensure_deployable, resolve_image
from gitopsctl.errors import InputError, UsageError
from gitopsctl.imageref import ImageReference, parse_reference

_POLICY_ARG = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?:[a-z0-9]([-.a-z0-9]*[a-z0-9])?)=(.*)$")


@dataclass
class Bump:
    """One policy's new value and where to look for its markers."""

    policy: str
    ref: ImageReference
    paths: list[Path]
    service: str | None = None
    source: str | None = None          # full SHA of the app commit, pipeline mode
    origin: str = "argument"           # argument | build-record | registry | unbuilt
    changes: list[setters.Change] = field(default_factory=list)
    skipped: list[setters.Skipped] = field(default_factory=list)
    skipped_links: list[setters.SkippedLink] = field(default_factory=list)
    new_texts: dict[Path, str] = field(default_factory=dict)
    markers_seen: int = 0
    commit: str | None = None

    def to_dict(self) -> dict:
        return {"policy": self.policy, "service": self.service, "image": str(self.ref),
                "source": self.source, "image_from": self.origin, "commit": self.commit,
                "markers": self.markers_seen,
                "changes": [c.to_dict() for c in self.changes],
                "skipped": [{"file": s.marker.file, "line": s.marker.line,
                             "setter": s.marker.setter, "reason": s.reason} for s in self.skipped],
                "skipped_links": [link.to_dict() for link in self.skipped_links]}


@dataclass
class BumpResult:
    bumps: list[Bump]
    dry_run: bool
    committed: bool
    pushed: bool
    notes: list[str] = field(default_factory=list)
    push_attempts: int = 0
    exit_code: int = 0

    @property
    def changes(self) -> list[setters.Change]:
        return [c for b in self.bumps for c in b.changes]

    def to_dict(self) -> dict:
        return {"dry_run": self.dry_run, "changed": bool(self.changes),
                "committed": self.committed, "pushed": self.pushed,
                "push_attempts": self.push_attempts,
                "changes": [c.to_dict() for c in self.changes],
                "bumps": [b.to_dict() for b in self.bumps], "notes": self.notes}

    def render_text(self, console: Any) -> None:
        for note in self.notes:
            console.print(f"note: {note}", markup=False)
        for bump in self.bumps:
            for change in bump.changes:
                m = change.marker
                console.print(f"{m.file}:{m.line}: {m.setter}: {change.old_value} -> "
                              f"{change.new_value}", markup=False)
            for link in bump.skipped_links:
                console.print(f"{link.path}: left alone ({link.reason})", markup=False)
            for skip in bump.skipped:
                console.print(f"{skip.marker.file}:{skip.marker.line}: {skip.marker.setter}: "
                              f"left alone ({skip.reason})", markup=False)
        count = len(self.changes)
        if not count:
            console.print("no change: every marker already holds its new value", markup=False)
        elif self.dry_run:
            console.print(f"dry run: {count} change(s), nothing written", markup=False)
        else:
            what = "committed and pushed" if self.pushed else "committed" if self.committed \
                else "written (not committed)"
            console.print(f"{count} change(s) {what}", markup=False)
        for bump in self.bumps:
            if bump.commit:
                console.print(f"commit {bump.commit[:12]} deploy({bump.service or bump.policy})",
                              markup=False)


def bump(ctx, *, paths: Sequence[Path] = (), policies: Sequence[str] = (),
         services: Sequence[str] = (), source: str | None = None, commit: bool = True,
         push: bool = True, dry_run: bool = False, allow_unbuilt: bool = False) -> BumpResult:
    if policies and services:
        raise UsageError("use either --policy or --service, not both",
                         hint="--policy sets explicit values; --service reads the build record")
    if allow_unbuilt and not services:
        raise UsageError("--allow-unbuilt only applies to --service",
                         hint="--policy values are written as given")
    if not policies and not services:
        raise UsageError("nothing to bump",
                         hint="pass --policy NAMESPACE:NAME=IMAGE_REF, or --service S --source SHA")
    write = not dry_run
    commit = commit and write
    notes: list[str] = []
    config = _config(ctx, required=commit or bool(services) or not paths)
    root = Path(config.root) if config is not None and config.root else Path(ctx.repo)
    source_sha = _source(root, source) if source else None

    if services:
        if source_sha is None:  # like build and stage: the checked-out commit
            from gitopsctl import repo

            source_sha = repo.resolve_source(root, None)
            notes.append(f"--source not given: using HEAD {source_sha[:7]}")
        bumps = _pipeline_bumps(config, services, source_sha, notes, ctx.environ, allow_unbuilt,
                                offline=dry_run)
    else:
        bumps = _explicit_bumps(config, policies, paths, source_sha, root)

    if source_sha is not None:
        revs = ["HEAD"]
        if commit and push:
            # a CI checkout may sit on an old commit: compare with what main has now
            from gitopsctl import repo

            repo.fetch(root, config.git.remote, config.git.branch)
            revs.append(f"refs/remotes/{config.git.remote}/{config.git.branch}")
        _check_superseded(root, bumps, revs)
    _plan(bumps, root, strict=bool(services), notes=notes)
    result = BumpResult(bumps=bumps, dry_run=dry_run, committed=False, pushed=False, notes=notes)
    if not write or not result.changes:
        return result
    if not commit:
        setters.write_plans(_final_plans(bumps))
        return result
    _commit_and_push(ctx, config, root, result, push)
    return result


# ---------------------------------------------------------------- building the list

def _config(ctx, *, required: bool):
    """The config; optional for plain file edits (--path/--policy with --no-commit or --dry-run)."""
    if not required and not Path(ctx.config_path).exists():
        return None  # and ruamel.yaml is never imported: bump stays quick
    return ctx.config


def _source(root: Path, source: str) -> str:
    from gitopsctl import repo

    return repo.resolve_source(root, source)


def _explicit_bumps(config, policies: Sequence[str], paths: Sequence[Path], source: str | None,
                    root: Path) -> list[Bump]:
    bumps: list[Bump] = []
    seen: set[str] = set()
    for raw in policies:
        match = _POLICY_ARG.match(raw.strip())
        if not match:
            raise UsageError(f"--policy {raw!r} is not NAMESPACE:NAME=IMAGE_REF",
                             hint="e.g. --policy flux-system:frontend="
                                  "harbor.lan/homelab/frontend:main-1a2b3c4-1764160000")
        policy, value = match.group(1), match.group(4)
        if policy in seen:
            raise UsageError(f"--policy {policy} given twice", hint="give each policy once")
        seen.add(policy)
        ref = ensure_deployable(parse_reference(value), f"--policy {policy}")
        service = _service_for_policy(config, policy)
        search = [Path(p) for p in paths] if paths else setters.service_paths(config, service, root)
        bumps.append(Bump(policy=policy, ref=ref, paths=search, service=service, source=source))
    return bumps


def _service_for_policy(config, policy: str) -> str | None:
    if config is None:
        return None
    return next((name for name, svc in config.services.items() if svc.policy == policy), None)


def _pipeline_bumps(config, services: Sequence[str], source: str, notes: list[str],
                    environ, allow_unbuilt: bool, offline: bool = False) -> list[Bump]:
    names = list(config.stage.order) + [n for n in config.services if n not in config.stage.order] \
        if "all" in services else list(dict.fromkeys(services))
    bumps = []
    for name in names:
        svc = config.service(name)
        ref, origin = resolve_image(config, name, source, environ=environ,
                                    allow_unbuilt=allow_unbuilt, offline=offline)
        if origin == "registry":
            notes.append(f"no build record for {name} at {source[:7]}: the registry has "
                         f"{ref.without_digest()}, pinned to its digest")
        elif origin == "unbuilt":
            why = "dry run, registry not asked" if offline else "--allow-unbuilt"
            notes.append(f"{why}: no build record for {name} at {source[:7]}; "
                         f"{ref} unverified, without a digest")
        bumps.append(Bump(policy=svc.policy, ref=ref, service=name, source=source, origin=origin,
                          paths=setters.service_paths(config, name, Path(config.root))))
    return bumps


# ---------------------------------------------------------------- planning

def _display(path: Path, root: Path) -> str:
    absolute, base = os.path.abspath(path), os.path.abspath(root)
    if absolute == base or absolute.startswith(base + os.sep):
        return os.path.relpath(absolute, base)
    return str(path)


def _plan(bumps: list[Bump], root: Path, *, strict: bool, notes: list[str]) -> None:
    """Compute every edit in memory, bump after bump, so later bumps see earlier edits.

    Files that never mention `$imagepolicy` are read once and not decoded or parsed.
    """
    texts: dict[Path, str | None] = {}
    displays: dict[Path, str] = {}
    for bump in bumps:
        selection = setters.select_yaml(bump.paths, root)
        bump.skipped_links = selection.links
        for path in selection.files:
            key = path  # absolute already
            if key not in texts:
                displays[key] = _display(key, root)
                texts[key] = setters.read_if_marked(key, displays[key])
            text = texts[key]
            if text is None:
                continue
            scan = setters.scan_for_update(text, displays[key], key, [bump.policy])
            if isinstance(scan, setters.UnreadFile):
                if str(scan) not in notes:
                    notes.append(str(scan))
                continue
            bump.markers_seen += sum(1 for m in scan.markers if m.policy == bump.policy)
            plan, skipped = setters.plan_file(scan, {bump.policy: bump.ref})
            bump.skipped.extend(skipped)
            if plan.changed:
                bump.changes.extend(plan.changes)
                bump.new_texts[key] = plan.new_text
                texts[key] = plan.new_text
        if not bump.markers_seen:
            where = ", ".join(_display(p, root) for p in bump.paths)
            message = f"no setter marker names {bump.policy} under {where}"
            if strict:
                raise InputError(message, hint=f'mark the image field with # {{"$imagepolicy": '
                                              f'"{bump.policy}"}}, or fix the service\'s paths')
            notes.append(message)


def _final_plans(bumps: Sequence[Bump]) -> list[setters.FilePlan]:
    """One plan per file holding its final text after all bumps."""
    final: dict[Path, str] = {}
    for bump in bumps:
        final.update(bump.new_texts)
    return [_file_plan(path, text) for path, text in final.items()]


def _file_plan(path: Path, text: str) -> setters.FilePlan:
    original = setters.read_text(path, str(path))
    scan = setters.FileScan(path=path, display=str(path), text=original)
    return setters.FilePlan(scan=scan, changes=[], new_text=text)


# ---------------------------------------------------------------- git

def _check_superseded(root: Path, bumps: Sequence[Bump], revs: Sequence[str] = ("HEAD",)) -> None:
    """Superseded when a bump's source is an ancestor of the source live at any of `revs`."""
    from gitopsctl.deploy.state import ensure_not_superseded, read_state

    states: dict = {}  # one read of the log per rev, however many bumps ask
    for bump in bumps:
        if not bump.source or not bump.service:
            continue
        for rev in revs:
            if rev not in states:
                states[rev] = read_state(root, rev)
            ensure_not_superseded(root, states[rev], bump.source, [bump.service])


def _commit_and_push(ctx, config, root: Path, result: BumpResult, push: bool) -> None:
    from gitopsctl import repo
    from gitopsctl.deploy.state import commit_author, deploy_message

    touched = sorted({_display(p, root) for b in result.bumps for p in b.new_texts})
    dirty = repo.changed_paths(root, touched)
    if dirty:
        # committing them would sweep someone's unfinished edits into a deploy commit
        raise UsageError(f"uncommitted changes in {', '.join(sorted(dirty))}",
                         hint="commit or stash them first, or use --no-commit")
    author = commit_author(config)
    all_changed: list[Path] = []

    def commit_all() -> None:
        for bump in result.bumps:
            if not bump.new_texts:
                continue
            setters.write_plans([_file_plan(p, t) for p, t in bump.new_texts.items()])
            rel = [_display(p, root) for p in bump.new_texts]
            all_changed.extend(bump.new_texts)
            message = deploy_message(config, bump.service or bump.policy, bump.source, bump.ref)
            bump.commit = repo.commit_paths(root, rel, message, author)
            if bump.commit:
                ctx.reporter.action(f"committed {bump.commit[:7]} deploy({bump.service or bump.policy})")
        result.committed = any(b.commit for b in result.bumps)

    commit_all()
    if not push or not result.committed:
        return

    def redo_on_new_tip() -> bool:
        """The branch moved under us and touched our lines: drop our commits, start over."""
        for bump in result.bumps:
            if bump.commit:
                repo.reset_last_commit(root)
        repo.fast_forward(root, repo.remote_ref(config))
        for bump in result.bumps:
            bump.changes, bump.skipped, bump.new_texts, bump.markers_seen = [], [], {}, 0
            bump.commit = None
        _check_superseded(root, result.bumps)
        _plan(result.bumps, root, strict=False, notes=result.notes)
        commit_all()
        return result.committed

    ctx.reporter.waiting(f"pushing to {config.git.remote}/{config.git.branch}")
    outcome = repo.push_with_retry(root, config.git.remote, config.git.branch,
                                   retries=config.git.push_retries, on_conflict=redo_on_new_tip,
                                   progress=ctx.reporter.waiting)
    result.push_attempts = outcome.attempts
    result.pushed = result.committed
    if result.pushed:
        ctx.reporter.success(f"pushed {outcome.head[:7]} to {config.git.remote}/{config.git.branch}"
                             + (f" after {outcome.attempts} attempts" if outcome.attempts > 1 else ""))
