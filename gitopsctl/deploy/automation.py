"""Single writer: suspend Flux image automation in git while a rollback stands.

If a Flux ImageUpdateAutomation writes the same setter markers as gitopsctl, it would
bump the image straight back after a rollback. The rollback commit therefore sets
`spec.suspend: true` on it (Flux applies that from git like any other change) and the
next successful stage sets it back to false. The edit touches only that one value.
Every Kubernetes target naming an `image_update_automation` gets this treatment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from gitopsctl.errors import InputError, Location

KIND = "ImageUpdateAutomation"


@dataclass(frozen=True)
class AutomationFile:
    path: Path
    name: str
    namespace: str
    suspended: bool


def find(root: Path, name: str, namespace: str) -> AutomationFile | None:
    """The manifest under `root` that declares ImageUpdateAutomation namespace/name."""
    for path in sorted(root.rglob("*.y*ml")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        found = find_in_text(path, text, name, namespace)
        if found is not None:
            return found
    return None


def find_in_text(path: Path, text: str, name: str, namespace: str) -> AutomationFile | None:
    """`path`'s ImageUpdateAutomation namespace/name, read from `text`, or None."""
    from ruamel.yaml import YAML

    from gitopsctl.yamlsafe import guard_text

    if KIND not in text:
        return None
    try:
        guard_text(text, str(path))
        docs = list(YAML(typ="safe").load_all(text))
    except Exception:
        return None  # `check` reports unparsable or hostile files; here they are not ours
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") != KIND:
            continue
        meta = doc.get("metadata") or {}
        if meta.get("name") == name and (meta.get("namespace") or "flux-system") == namespace:
            spec = doc.get("spec") or {}
            return AutomationFile(path, name, namespace, bool(spec.get("suspend")))
    return None


def find_at(repo_path: Path, rev: str, name: str, namespace: str):
    """(AutomationFile, git mode, text) of the automation in the tree of `rev`, or None."""
    from gitopsctl import repo as gitrepo

    for path in gitrepo.grep_files(repo_path, rev, KIND, ("*.yaml", "*.yml")):
        entries = [e for e in gitrepo.tree_files(repo_path, rev, [path]) if not e.is_link]
        if not entries:
            continue
        text = gitrepo.read_blobs(repo_path, [entries[0].blob])[entries[0].blob].decode("utf-8", "replace")
        found = find_in_text(Path(path), text, name, namespace)
        if found is not None:
            return found, entries[0].mode, text
    return None


def suspended_text(text: str, found: AutomationFile, suspended: bool) -> str:
    """`text` with spec.suspend set; the same text when it already had that value."""
    if found.suspended == suspended:
        return text
    return _edit(text, found, suspended, "\r\n" if "\r\n" in text else "\n")


def _edit(text: str, found: AutomationFile, suspended: bool, newline: str) -> str:
    from ruamel.yaml import YAML

    value = "true" if suspended else "false"
    lines = text.splitlines(keepends=True)
    offset = 0  # line index where the current document starts
    for chunk in _documents(lines):
        doc = YAML(typ="rt").load("".join(chunk))
        if isinstance(doc, dict) and doc.get("kind") == KIND \
                and (doc.get("metadata") or {}).get("name") == found.name:
            spec = doc.get("spec")
            if not isinstance(spec, dict):
                raise InputError(f"{KIND} {found.name} has no spec mapping",
                                 location=Location(str(found.path)),
                                 hint="add `spec:` with the automation settings")
            if "suspend" in spec:
                line, _ = spec.lc.value("suspend")
                idx = offset + line
                old = lines[idx]
                m = re.match(r"(\s*suspend\s*:\s*)(\S+)(.*)", old, re.DOTALL)
                if not m:
                    raise InputError(f"cannot edit spec.suspend of {KIND} {found.name}",
                                     location=Location(str(found.path), idx + 1))
                lines[idx] = m.group(1) + value + m.group(3)
            else:
                first_key = next(iter(spec))
                line, col = spec.lc.key(first_key)
                idx = offset + line
                lines.insert(idx, " " * col + f"suspend: {value}" + newline)
            return "".join(lines)
        offset += len(chunk)
    raise InputError(f"{KIND} {found.name} not found in {found.path}")


def _documents(lines: list[str]) -> list[list[str]]:
    """Split on `---` lines, keeping every line in exactly one chunk."""
    chunks: list[list[str]] = [[]]
    for line in lines:
        if line.rstrip("\r\n").rstrip() == "---" and chunks[-1]:
            chunks.append([])
        chunks[-1].append(line)
    return chunks


def configured(config) -> list:
    """The ImageUpdateAutomation refs of every Kubernetes target, each once."""
    refs = []
    for settings in config.targets_of_kind("kubernetes").values():
        ref = settings.image_update_automation
        if ref is not None and (ref.namespace, ref.name) not in {(r.namespace, r.name) for r in refs}:
            refs.append(ref)
    return refs


def set_all(config, repo_path: Path, tip: str, suspended: bool):
    """Edits setting spec.suspend on every configured automation at `tip`.

    Returns (path -> (git mode, new bytes), the names edited, the names not found).
    """
    edits: dict[str, tuple[str, bytes]] = {}
    names, missing = [], []
    for ref in configured(config):
        found = find_at(repo_path, tip, ref.name, ref.namespace)
        if found is None:
            missing.append(f"{ref.namespace}/{ref.name}")
            continue
        manifest, mode, text = found
        path = str(manifest.path)
        if path in edits:  # two automations in one file: edit the edited text
            text = edits[path][1].decode("utf-8")
            manifest = find_in_text(manifest.path, text, ref.name, ref.namespace) or manifest
        new_text = suspended_text(text, manifest, suspended)
        if new_text != text:
            edits[path] = (mode, new_text.encode("utf-8"))
            names.append(f"{ref.namespace}/{ref.name}")
    return edits, names, missing


def suspend_edits(config, repo_path: Path, tip: str, reporter) -> dict[str, tuple[str, bytes]]:
    """The edits suspending every configured image automation at `tip`, so nothing undoes
    a rollback; {} when there is nothing to suspend."""
    edits, names, missing = set_all(config, repo_path, tip, True)
    for name in missing:
        reporter.warning(f"{KIND} {name} not found at {tip[:7]}; it cannot be suspended")
    if names:
        reporter.action(f"suspending image automation {', '.join(names)} "
                        "so nothing undoes the rollback")
    return edits
