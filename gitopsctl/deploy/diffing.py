"""Diff: what a stage of a source would change, changing nothing.

The same plan a stage makes (deploy/plan.py, from the remote tip), shown three ways: a
unified diff of every file it edits; per Kubernetes target, `kubectl kustomize` of each
Flux Kustomization whose path holds an edited file, before and after; per VM target
whose compose file is edited, `docker compose config`, before and after. The trees are
written from git objects into a temporary directory, never read from the work tree, and
compose renders without interpolation or env files, so no secret of this machine's
environment or of the VM's env file can reach the output.
"""

from __future__ import annotations

import difflib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from gitopsctl import flux
from gitopsctl import repo as gitrepo
from gitopsctl.errors import EXIT_FINDINGS, EXIT_OK, ExternalError, GitopsctlError, Superseded

RENDER_TIMEOUT = 60.0
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


@dataclass
class Rendered:
    """One thing rendered twice: a Kustomization's manifests or a compose project's config."""

    target: str
    name: str          # namespace/name of the Kustomization, or "project NAME" (compose)
    path: str          # repo-relative directory or file rendered
    before: str = ""
    after: str = ""
    error: str | None = None

    def unified(self) -> str:
        return _unified(self.before, self.after, f"a/{self.path} (rendered)",
                        f"b/{self.path} (rendered)")

    def to_dict(self) -> dict:
        return {"target": self.target, "name": self.name, "path": self.path,
                "before": self.before, "after": self.after, "diff": self.unified(),
                "error": self.error}


@dataclass
class DiffResult:
    source: str
    tip: str
    services: list[str]
    plans: list[dict] = field(default_factory=list)
    files: list[dict] = field(default_factory=list)        # {path, before, after, diff}
    manifests: list[Rendered] = field(default_factory=list)
    compose: list[Rendered] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    exit_code: int = EXIT_OK

    @property
    def changed(self) -> bool:
        return bool(self.files)

    def to_dict(self) -> dict:
        return {"source": self.source, "tip": self.tip, "services": self.services,
                "changed": self.changed, "plans": self.plans, "files": self.files,
                "manifests": [m.to_dict() for m in self.manifests],
                "compose": [c.to_dict() for c in self.compose], "notes": self.notes,
                "exit_code": self.exit_code}

    def render_text(self, console: Any) -> None:
        if not self.changed:
            console.print(f"a stage of {self.source[:7]} would change nothing at {self.tip[:7]}",
                          markup=False)
        for item in self.files:
            console.print(item["diff"], markup=False, end="")
        for group, title in ((self.manifests, "kustomize build"), (self.compose, "compose config")):
            for rendered in group:
                console.print(f"# {title} of {rendered.target} {rendered.name} ({rendered.path})",
                              markup=False)
                console.print(f"#   {rendered.error}" if rendered.error else
                              rendered.unified() or "#   renders the same\n", markup=False, end="")
        for note in self.notes:
            console.print(f"note: {note}", markup=False)


def diff(ctx, *, source: str | None = None, service: str | None = None,
         allow_unbuilt: bool = False, exit_code: bool = False) -> DiffResult:
    """What `stage --source SOURCE` would edit and render; `exit_code`: 1 when it would
    change anything, as `git diff --exit-code`."""
    from gitopsctl.deploy import suspension
    from gitopsctl.deploy.plan import plan_stage
    from gitopsctl.deploy.state import ensure_not_superseded, read_state

    config = ctx.config
    root = ctx.repo
    if service is not None:
        config.service(service)  # an unknown name is exit 2 with the known names as hint
    services = [service] if service else list(config.stage.order)
    try:
        tip = gitrepo.fetch(root, config.git.remote, config.git.branch)
    except GitopsctlError as exc:
        ctx.reporter.warning(f"cannot fetch, diffing against the local clone: {exc.message}")
        tip = gitrepo.resolve_commit(root, "HEAD")
    source = gitrepo.resolve_source(root, source, option="--source")
    result = DiffResult(source=source, tip=tip, services=services)
    state = read_state(root, tip)  # one read of the log for both questions
    standing = suspension.current(root, tip, state)
    if standing is not None:
        result.notes.append(f"a stage would stop now: {standing.describe()}")
    try:
        ensure_not_superseded(root, state, source, config.stage.order)
    except Superseded as exc:
        result.notes.append(f"a stage would stop now: {exc.message}")
    except GitopsctlError as exc:  # a shallow clone: the preview stands, the ordering is unknown
        result.notes.append(f"cannot tell whether a newer deploy supersedes it: {exc.message}")
    plans = plan_stage(root, config, tip, source, services, environ=ctx.environ,
                       allow_unbuilt=allow_unbuilt)
    result.plans = [p.to_dict() for p in plans]
    edits: dict[str, tuple[str, str]] = {}
    for plan in plans:  # each plan saw the edits of the ones before it: the last text wins
        edits.update(plan.files)
    result.files = _file_diffs(root, tip, edits)
    if edits:
        with tempfile.TemporaryDirectory(prefix="gitopsctl-diff-") as tmp:
            before, after = Path(tmp, "before"), Path(tmp, "after")
            _write_tree(root, tip, before)
            shutil.copytree(before, after, symlinks=True)
            for path, (_, text) in edits.items():
                (after / path).write_text(text, encoding="utf-8")
            result.manifests = _kustomize_all(config, root, tip, edits, before, after)
            result.compose = _compose_all(config, edits, before, after, ctx.environ)
    if exit_code and result.changed:
        result.exit_code = EXIT_FINDINGS
    return result


def _file_diffs(root, tip: str, edits: dict[str, tuple[str, str]]) -> list[dict]:
    entries = {e.path: e for e in gitrepo.tree_files(root, tip, sorted(edits))}
    blobs = gitrepo.read_blobs(root, [e.blob for e in entries.values()])
    out = []
    for path in sorted(edits):
        old = blobs[entries[path].blob].decode("utf-8", "replace") if path in entries else ""
        new = edits[path][1]
        out.append({"path": path, "before": old, "after": new,
                    "diff": _unified(old, new, f"a/{path}", f"b/{path}")})
    return out


def _write_tree(root, tip: str, into: Path) -> None:
    """The tree of `tip` as files under `into`; links only when they stay inside it."""
    entries = gitrepo.tree_files(root, tip, ["."])
    blobs = gitrepo.read_blobs(root, [e.blob for e in entries if e.mode != gitrepo.SUBMODULE_MODE])
    for entry in entries:
        if entry.mode == gitrepo.SUBMODULE_MODE:
            continue
        dest = into / entry.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        data = blobs[entry.blob]
        if entry.is_link:
            link = data.decode("utf-8", "surrogateescape")
            resolved = (dest.parent / link).resolve()
            if not PurePosixPath(link).is_absolute() and resolved.is_relative_to(into.resolve()):
                dest.symlink_to(link)
            continue
        dest.write_bytes(data)
        if entry.mode == "100755":
            dest.chmod(0o755)


def _kustomize_all(config, root, tip: str, edits, before: Path, after: Path) -> list[Rendered]:
    found = _flux_kustomizations(root, tip)
    out: list[Rendered] = []
    for target_name, target in config.targets_of_kind("kubernetes").items():
        for ref in target.kustomizations:
            path = found.get((ref.namespace, ref.name))
            if path is None or not any(_under(edited, path) for edited in edits):
                continue
            item = Rendered(target_name, f"{ref.namespace}/{ref.name}", path or ".")
            out.append(item)
            if not any((before / path / name).is_file() for name in KUSTOMIZATION_FILES):
                item.error = (f"no kustomization.yaml in {path or '.'}: Flux generates one there; "
                              "kubectl kustomize cannot render it (the file diff above is the change)")
                continue
            kubectl = _kubectl()
            item.before, item.after, item.error = _render_pair(
                [kubectl, "kustomize", str(before / path)], [kubectl, "kustomize", str(after / path)],
                before, after)
    return out


def _compose_all(config, edits, before: Path, after: Path, environ) -> list[Rendered]:
    from gitopsctl.compose import compose_command

    out: list[Rendered] = []
    for target_name, target in config.targets_of_kind("vm").items():
        if target.compose_file not in edits:
            continue
        item = Rendered(target_name, f"project {target.compose_project}", target.compose_file)
        out.append(item)
        # No interpolation, no env files, no absolute paths: the same text from either
        # temporary tree, and nothing of this machine's secrets in it.
        base = [*compose_command(environ), "-p", target.compose_project, "-f"]
        flags = ["config", "--no-interpolate", "--no-env-resolution", "--no-path-resolution"]
        item.before, item.after, item.error = _render_pair(
            [*base, str(before / target.compose_file), *flags],
            [*base, str(after / target.compose_file), *flags], before, after)
    return out


def _render_pair(first: list[str], second: list[str], before: Path, after: Path):
    """(before, after, error) of two renders; an error says which side failed and why."""
    rendered = []
    for args, tree, side in ((first, before, "before"), (second, after, "after")):
        proc = _run(args, tree)
        if proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            return "", "", f"render {side} failed: {why.replace(str(tree), '.')}"
        rendered.append(proc.stdout)
    return rendered[0], rendered[1], None


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, cwd=cwd, capture_output=True, text=True, errors="replace",
                              stdin=subprocess.DEVNULL, timeout=RENDER_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise ExternalError(f"{Path(args[0]).name} did not finish within {RENDER_TIMEOUT:.0f}s") from None
    except OSError as exc:
        raise ExternalError(f"cannot run {args[0]}: {exc}") from None


def _kubectl() -> str:
    from gitopsctl.executables import require_tool

    return require_tool("kubectl", "render Kustomizations for `gitopsctl diff`")


def _flux_kustomizations(root, tip: str) -> dict[tuple[str, str], str]:
    """(namespace, name) -> spec.path (normalized, "" for the root) of every Flux
    Kustomization defined in the tree of `tip`."""
    from ruamel.yaml import YAML

    from gitopsctl.yamlsafe import guard_text

    paths = gitrepo.grep_files(root, tip, flux.KUSTOMIZE_API_PREFIX, ("*.yaml", "*.yml"))
    entries = [e for e in gitrepo.tree_files(root, tip, paths) if not e.is_link]
    blobs = gitrepo.read_blobs(root, [e.blob for e in entries])
    found: dict[tuple[str, str], str] = {}
    for entry in entries:
        text = blobs[entry.blob].decode("utf-8", "replace")
        try:
            guard_text(text, entry.path)
            docs = list(YAML(typ="safe").load_all(text))
        except Exception:  # noqa: BLE001 - `check` reports broken files; diff looks past them
            continue
        for doc in docs:
            normal = flux.kustomization_path(doc) if flux.is_kustomization(doc) else None
            if normal is not None:
                meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
                found[(meta.get("namespace") or "flux-system", str(meta.get("name")))] = \
                    "" if normal == "." else normal
    return found


def _under(path: str, directory: str) -> bool:
    return not directory or path == directory or path.startswith(directory.rstrip("/") + "/")


def _unified(old: str, new: str, a: str, b: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        fromfile=a, tofile=b))
