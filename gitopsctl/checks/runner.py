"""Run every rule over a set of paths and collect the findings."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from gitopsctl import yamlsafe
from gitopsctl.checks import ERROR, WARNING, Finding, apis, content, markers, tools
from gitopsctl.checks.documents import KUSTOMIZATION_NAMES, YamlFile, load
from gitopsctl.errors import ConfigError, InputError, Location
from gitopsctl.setters import TOKEN, read_text, select_yaml

CLUSTERS = "clusters"


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    files: int = 0
    kustomizations: int = 0
    compose_files: int = 0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]


def run(root: Path, paths: Sequence[Path], config_path: Path | None,
        environ=None) -> Report:
    """Check `paths` (default: clusters/ and the config) of the repository at `root`."""
    report = Report()
    root = root.resolve()
    explicit = bool(paths)
    targets = [Path(p) if Path(p).is_absolute() else (Path.cwd() / p) for p in paths] or \
        [root / CLUSTERS]
    targets = [t for t in targets if t.exists() or _missing(report, t, root)]

    config = _load_config(report, config_path, root, environ)
    selection = select_yaml(targets, root)
    report.findings += [_link_finding(link) for link in selection.links]
    files = _load_files(report, selection.files, root, config_path)
    report.files = len(files)
    by_path = {f.path.resolve(): f for f in files}

    for file in files:
        report.findings += content.plaintext_secrets(file)
        report.findings += content.credentials(file)
        report.findings += content.images(file)
        if file.is_compose:
            report.findings += content.compose_healthchecks(file)

    # policies and automations are looked up in all of clusters/, whatever was passed
    clusters = _load_clusters(root, by_path)
    policies = markers.flux_objects(clusters, "ImagePolicy")
    automations = markers.flux_objects(clusters, "ImageUpdateAutomation")
    report.findings += markers.unknown_policies(files, policies)
    report.findings += markers.two_writers(config, files, automations, root)
    if config is not None and not explicit:
        every = {**{f.path.resolve(): f for f in clusters}, **by_path}
        report.findings += markers.services_without_markers(
            config, every, _service_lines(config.path), _display(Path(config.path), root))

    report.findings += apis.served_and_valid(files, apis.repository_crds(files, root), apis.patch_files(files))
    report.findings += _tool_findings(report, files, root)
    report.findings.sort(key=Finding.sort_key)
    return report


def _link_finding(link) -> Finding:
    return Finding("GOC013", Location(link.path), f"symbolic link to {link.target} skipped: "
                   f"{link.reason}", "commit the file itself, or point the link inside the "
                   "scanned paths; bump never edits through a link", severity=WARNING)


def _missing(report: Report, path: Path, root: Path) -> bool:
    report.findings.append(Finding("GOC001", Location(_display(path, root)), "path does not exist",
                                   "pass files or directories inside the repository"))
    return False


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


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


def _load_clusters(root: Path, loaded: dict[Path, YamlFile]) -> list[YamlFile]:
    """Every parseable file under clusters/, reusing what is loaded; screened by content."""
    clusters = root / CLUSTERS
    if not clusters.is_dir():
        return list(loaded.values())
    out = []
    for path in select_yaml([clusters], root).files:
        key = path.resolve()
        if key in loaded:
            out.append(loaded[key])
            continue
        try:
            text = read_text(path, _display(path, root))
        except yamlsafe.HostileInput:
            raise
        except InputError:
            continue
        if "image.toolkit.fluxcd.io" not in text and TOKEN not in text:
            continue
        file, _ = load(path, _display(path, root))
        if file is not None:
            out.append(file)
    return out


def _service_lines(config_path: Path | None) -> dict[str, int]:
    """Line of each `services.<name>:` key, so GOC007 points into gitopsctl.yaml."""
    if config_path is None:
        return {}
    from ruamel.yaml import YAML

    try:
        data = YAML(typ="rt").load(Path(config_path).read_text(encoding="utf-8"))
        services = data["services"]
        return {name: services.lc.key(name)[0] + 1 for name in services}
    except Exception:  # noqa: BLE001 - only a nicer location; the config loader reports errors
        return {}


def _tool_findings(report: Report, files: Sequence[YamlFile], root: Path) -> list[Finding]:
    directories = sorted({f.path.parent.resolve() for f in files
                          if f.path.name in KUSTOMIZATION_NAMES})
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
