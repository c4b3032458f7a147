"""Run every rule over the files in scope (checks.scope) and collect the findings."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from gitopsctl import yamlsafe
from gitopsctl.checks import (ERROR, WARNING, Finding, apis, bindings, content, markers, routing,
                              scope, tools)
from gitopsctl.checks.documents import KUSTOMIZATION_NAMES, YamlFile, load
from gitopsctl.checks.scope import display as _display
from gitopsctl.errors import ConfigError, Location
from gitopsctl.setters import select_yaml


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    files: int = 0
    kustomizations: int = 0
    compose_files: int = 0
    scope: str = ""

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]


def run(root: Path, paths: Sequence[Path], config_path: Path | None,
        environ=None) -> Report:
    """Check the repository at `root`: the scope gitopsctl.yaml gives (checks.scope), or only
    the files of `paths` that lie in it."""
    report = Report()
    root = root.resolve()
    config = _load_config(report, config_path, root, environ)
    if config is None and config_path is not None and Path(config_path).exists() and not paths:
        report.scope = "nothing but gitopsctl.yaml: it does not load, so the scope is unknown"
        return report
    tracked = scope.git_files(root)
    if config is not None:
        lookups = scope.Lookups(root, tracked if tracked is not None else [])
        in_scope = scope.from_config(config, root, lookups, tracked)
    else:
        in_scope = None if (paths and tracked is None) else scope.whole_repository(root, tracked)
        lookups = scope.Lookups(root, tracked or [])

    selected, links = _selected(report, root, paths, in_scope)
    report.scope = in_scope.described if in_scope is not None else "the files given"
    report.findings += [_link_finding(link) for link in links]
    files = _load_files(report, selected, root, config_path)
    compose = in_scope.compose if in_scope is not None else set()
    for file in files:
        if file.path.resolve() in compose:
            file.compose = True
        lookups.register(file)
    report.files = len(files)

    for file in files:
        report.findings += content.plaintext_secrets(file)
        report.findings += content.credentials(file)
        report.findings += content.images(file)
        if file.is_compose:
            report.findings += content.compose_healthchecks(file)

    # policies and automations are looked up in the whole repository, whatever is checked
    image_objects = lookups.files_with("image.toolkit.fluxcd.io")
    policies = markers.flux_objects(image_objects, "ImagePolicy")
    automations = markers.flux_objects(image_objects, "ImageUpdateAutomation")
    report.findings += markers.unknown_policies(files, policies)
    report.findings += markers.two_writers(config, files, automations, root)
    if config is not None:
        report.findings += _config_findings(config, root, files, in_scope, lookups, policies)

    crds = apis.repository_crds(files, lookups.files_with("CustomResourceDefinition"))
    report.findings += apis.served_and_valid(files, crds, apis.patch_files(files))
    report.findings += routing.routes(files, _routing_counterparts(lookups, in_scope), lookups.file)
    report.findings += _tool_findings(report, files, root, _enclosing_kustomizations(
        files, in_scope.files if (paths and in_scope is not None) else ()))
    report.findings.sort(key=Finding.sort_key)
    return report


def _config_findings(config, root: Path, files, in_scope, lookups, policies) -> list[Finding]:
    """The rules about gitopsctl.yaml's bindings; they judge the repository as a whole, so
    they run whichever files were named (a commit deleting a marker must fail)."""
    lines = bindings.ConfigLines(Path(config.path), _display(Path(config.path), root))
    out = list(bindings.services_without_markers(config, in_scope, lookups, lines))
    out += bindings.markers_outside_services(
        config, files, in_scope, lambda policy: markers.policy_exists(policy, policies))
    out += bindings.compose_bindings(config, lookups, lines)
    out += bindings.missing_paths(in_scope, lines)
    return out


def _routing_counterparts(lookups, in_scope) -> list[YamlFile]:
    """The Services and EndpointSlices in scope besides the files checked: a staged Service is
    judged with the slices already committed."""
    if in_scope is None:
        return []
    inside = {p.resolve() for p in in_scope.files}
    return [f for needle in ("Service", "EndpointSlice") for f in lookups.files_with(needle)
            if f.path.resolve() in inside]


def _selected(report: Report, root: Path, paths: Sequence[Path], in_scope):
    """The files to check and the links skipped on the way."""
    if not paths:
        return in_scope.files, in_scope.links
    given = [Path(p) if Path(p).is_absolute() else (Path.cwd() / p) for p in paths]
    given = [p for p in given if p.exists() or p.is_symlink() or _missing(report, p, root)]
    selection = select_yaml(given, root)
    if in_scope is None:
        return selection.files, selection.links
    return in_scope.restrict(selection.files), [
        link for link in selection.links
        if any(link.path == mine.path for mine in in_scope.links)]


def _link_finding(link) -> Finding:
    return Finding("GOC013", Location(link.path), f"symbolic link to {link.target} skipped: "
                   f"{link.reason}", "commit the file itself, or point the link inside the "
                   "scanned paths; bump never edits through a link", severity=WARNING)


def _missing(report: Report, path: Path, root: Path) -> bool:
    report.findings.append(Finding("GOC001", Location(_display(path, root)), "path does not exist",
                                   "pass files or directories inside the repository"))
    return False


def _load_config(report: Report, config_path: Path | None, root: Path, environ):
    if config_path is None or not Path(config_path).exists():
        return None
    from gitopsctl import config as config_mod

    try:
        return config_mod.load(config_path, root=root, environ=environ or {})
    except yamlsafe.HostileInput:
        raise  # exit 2 like every command: a config that cannot be read is not a finding
    except ConfigError as exc:
        report.findings.append(Finding("GOC012", exc.location or Location(str(config_path)),
                                       exc.message, exc.hint or "fix gitopsctl.yaml"))
        return None


def _load_files(report: Report, paths: Sequence[Path], root: Path,
                config_path: Path | None) -> list[YamlFile]:
    skip = Path(config_path).resolve() if config_path else None
    out = []
    for path in paths:
        if skip is not None and path.resolve() == skip:
            continue  # the config is validated by its own loader (GOC012)
        file, findings = load(path, _display(path, root))
        report.findings += findings
        if file is not None:
            out.append(file)
    return out


def _enclosing_kustomizations(files: Sequence[YamlFile], in_scope: Sequence[Path]) -> set[Path]:
    """Directories of in-scope kustomizations above the files given: a changed deployment.yaml
    (pre-commit passes only it) is judged by building what includes it."""
    given = {f.path.resolve().parent for f in files}
    found = set()
    for path in in_scope:
        if path.name in KUSTOMIZATION_NAMES:
            directory = path.resolve().parent
            if any(d == directory or directory in d.parents for d in given):
                found.add(directory)
    return found


def _tool_findings(report: Report, files: Sequence[YamlFile], root: Path,
                   enclosing: set[Path]) -> list[Finding]:
    directories = sorted({f.path.parent.resolve() for f in files
                          if f.path.name in KUSTOMIZATION_NAMES} | enclosing)
    composes = [f for f in files if f.is_compose]
    report.kustomizations, report.compose_files = len(directories), len(composes)
    jobs = []
    with ThreadPoolExecutor(max_workers=4) as pool:
        for directory in directories:
            kfile = next(directory / n for n in KUSTOMIZATION_NAMES if (directory / n).exists())
            jobs.append(pool.submit(tools.kustomize_build, directory, _display(kfile, root)))
        for file in composes:
            jobs.append(pool.submit(tools.compose_config, file.path, file.display))
        results = [job.result() for job in jobs]
    return [r for r in results if r is not None]
