"""Statements issue 16 found stale stay fixed, and the adoption guide's pre-commit snippet works.

An installed gitopsctl has no docs/, examples/ or scripts/: a message pointing there must say
the file is in the gitopsctl repository. gitopsctl has no PyPI release and no tags, the code
that seals lives in gitopsctl/sealed/, and CI needs no rights on the ImageUpdateAutomation.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from gitopsctl.sandbox.lab.gitremote import git

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = REPO_ROOT / "gitopsctl"
VENV_BIN = Path(sys.executable).parent
THIS = Path(__file__).resolve().relative_to(REPO_ROOT).as_posix()
IN_REPO = "in the gitopsctl repository"
REPO_PATH = re.compile(
    r"(?<![\w./-])((?:docs|examples|clusters|scripts|tests|benchmarks)/[\w.{}/-]*[\w}]"
    r"|[\w-]+\.md\b)")


def tracked_text_files() -> dict[str, str]:
    names = git(REPO_ROOT, "ls-files", "-co", "--exclude-standard").splitlines()
    texts = {}
    for name in names:
        path = REPO_ROOT / name
        if name == THIS or not path.is_file() or path.is_symlink():
            continue
        try:
            texts[name] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
    return texts


def findings(pattern: re.Pattern, *, unless: str | None = None) -> list[str]:
    found = []
    for name, text in tracked_text_files().items():
        for number, line in enumerate(text.splitlines(), 1):
            if pattern.search(line) and not (unless and unless in line):
                found.append(f"{name}:{number}: {line.strip()}")
    return found


def test_no_file_names_the_sealed_module_that_became_a_package():
    assert (PACKAGE / "sealed" / "__init__.py").is_file() and not (PACKAGE / "sealed.py").exists()
    assert findings(re.compile(r"\bsealed\.py\b")) == []


def test_no_pre_commit_rev_names_a_tag_that_does_not_exist():
    tags = set(git(REPO_ROOT, "tag", "--list").split())
    revs = []
    for name, text in tracked_text_files().items():
        for number, line in enumerate(text.splitlines(), 1):
            match = re.match(r"^[#\s-]*rev:\s*['\"]?(v?\d+(?:\.\d+)+)\b", line)
            if match and match.group(1) not in tags:
                revs.append(f"{name}:{number}: {line.strip()}")
    assert revs == []


def test_nothing_installs_gitopsctl_by_name_from_an_index():
    """`pipx install gitopsctl` / `pip install gitopsctl` fetch a PyPI project gitopsctl does not
    publish (and someone else could). A git URL (`gitopsctl @ git+…`) is fine; so is adding an
    extra to an installed gitopsctl; a line saying there is no PyPI release may quote it."""
    by_name = re.compile(r"\bpipx\s+install\s+['\"]?gitopsctl(\[[\w,]+\])?['\"]?(?!\s*@|[\w.\[-])"
                         r"|\bpip\s+install\s+['\"]?gitopsctl['\"]?(?!\s*@|[\w.\[-])")
    assert findings(by_name, unless="PyPI") == []


def test_bump_and_check_names_the_typer_versions_pyproject_allows():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = next(d for d in project["dependencies"] if Requirement(d).name == "typer")
    typer = Requirement(declared)
    upper = min((Version(s.version) for s in typer.specifier if s.operator == "<"), default=None)
    page = (REPO_ROOT / "docs" / "bump-and-check.md").read_text()
    assert f"`{declared[len('typer'):].strip()}`" in page  # the range, as pyproject.toml writes it
    for mention in re.findall(r"\btyper (\d+\.\d+(?:\.\d+)?)\b", page, flags=re.I):
        version = Version(mention)
        # the bound itself may be named as the reason for it
        assert version in typer.specifier or version == upper, mention


def test_ci_identity_and_docs_agree_that_image_automation_is_suspended_in_git():
    access = REPO_ROOT / "clusters/homelab/infrastructure/controllers/ci-access.yaml"
    rules = [rule for doc in yaml.safe_load_all(access.read_text())
             if doc and doc.get("kind") == "Role" for rule in doc["rules"]]
    granted = {resource for rule in rules for resource in rule["resources"]}
    assert "imageupdateautomations" not in granted
    assert {"gitrepositories", "kustomizations"} <= granted
    automation = (PACKAGE / "deploy" / "automation.py").read_text()
    assert "in git" in automation.splitlines()[0]  # the module's own account of how it suspends
    # a statement (sentence or list item) granting CI a verb on the automation
    grants = re.compile(r"\b(get|patch|the same on|rights?|verbs?)\b", re.I)
    explains = re.compile(r"git commit|in git|not through the API|nothing on", re.I)
    wrong = []
    for page in sorted((REPO_ROOT / "docs").glob("*.md")):
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for statement in re.split(r"(?<=\.)\s+|\n\s*[-*] |\n\s*\n", text):
            flat = " ".join(statement.split())
            if "ImageUpdateAutomation" in flat and grants.search(flat) and not explains.search(flat):
                wrong.append(f"{page.name}: {flat[:160]}")
    assert wrong == []


def _strings(node: ast.AST) -> str:
    return "".join(n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str))


def _messages(tree: ast.AST):
    """(line, text) of every hint, help text, error message and generated header."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg in ("hint", "help"):
                    yield node.lineno, _strings(keyword.value)
            func = node.func
            name = getattr(func, "id", None) or getattr(func, "attr", "")
            if name.endswith(("Error", "Config")) and node.args:
                yield node.lineno, _strings(node.args[0])
        elif isinstance(node, ast.Assign) and any(getattr(t, "id", None) in ("hint", "header")
                                                  for t in node.targets):
            yield node.lineno, _strings(node.value)


def _docstrings(tree: ast.AST) -> set[int]:
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, kinds) and n.body and isinstance(n.body[0], ast.Expr)
            and isinstance(n.body[0].value, ast.Constant)}


def test_messages_name_only_files_an_installed_gitopsctl_has_or_say_where_they_are():
    missing, scanned = [], 0
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(REPO_ROOT)
        for line, text in _messages(tree):
            scanned += 1
            flat = " ".join(text.replace("#", " ").split())
            for token in REPO_PATH.findall(text):
                if IN_REPO not in flat and not (PACKAGE / token).exists():
                    missing.append(f"{where}:{line}: {token}: {flat[:120]}")
        skip = _docstrings(tree)
        for node in ast.walk(tree):  # docs/ never ships: any text naming a page says where it is
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                if re.search(r"(?<![\w/])docs/\S+\.md", node.value) and IN_REPO not in _around(tree, node):
                    missing.append(f"{where}:{node.lineno}: {node.value.strip()[:120]}")
    assert scanned > 100  # the walk found the hints at all
    assert missing == []


def _around(tree: ast.AST, constant: ast.Constant) -> str:
    """The whole string expression (implicit concatenation, f-string) a constant is part of."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.JoinedStr, ast.BinOp, ast.Tuple, ast.Call, ast.keyword)) \
                and any(n is constant for n in ast.walk(node)):
            text = " ".join(_strings(node).replace("#", " ").split())
            if IN_REPO in text:
                return text
    return " ".join(constant.value.split())


def test_the_sync_unit_names_no_documentation_the_vm_lacks(tmp_path):
    from gitopsctl import config as config_mod
    from gitopsctl.systemd import render_units

    path = tmp_path / "gitopsctl.yaml"
    path.write_text("version: 2\nregistry: {url: 127.0.0.1:5000, project: homelab}\n"
                    "targets:\n  vm: {kind: vm, host: 127.0.0.2, user: deploy, checkout: /opt/homelab,"
                    " compose_file: deploy/compose.yml, remote_command: /opt/gitopsctl/bin/gitopsctl}\n"
                    "services:\n  api: {image: api, context: api, target: vm, policy: 'flux-system:api',"
                    " paths: [deploy]}\n")
    units = render_units(config_mod.load(path, environ={}))
    assert sorted(units) == ["gitopsctl-sync.service", "gitopsctl-sync.timer"]
    for name, text in units.items():
        for value in re.findall(r"^Documentation=(.*)$", text, flags=re.M):
            for uri in value.split():
                # a file: URI must be something every VM has: the checkout is the homelab's own
                assert uri.startswith(("http://", "https://")) or (
                    uri.startswith("file://") and "/opt/homelab" not in uri
                    and Path(uri[len("file://"):]).exists()), f"{name}: {uri}"
    assert "gitopsctl sync --help" in units["gitopsctl-sync.service"]


def _snippet(page: str) -> str:
    text = (REPO_ROOT / "docs" / page).read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, flags=re.S) if "repos:" in b]
    assert len(blocks) == 1, page
    return blocks[0]


@pytest.fixture
def gitopsctl_remote(tmp_path) -> tuple[str, str]:
    """A bare git repository served by file:// URL, holding this tree's hook definitions."""
    work = tmp_path / "gitopsctl"
    work.mkdir()
    git(work, "init", "-q", "--initial-branch=main")
    shutil.copy(REPO_ROOT / ".pre-commit-hooks.yaml", work / ".pre-commit-hooks.yaml")
    git(work, "add", ".pre-commit-hooks.yaml")
    git(work, "-c", "user.name=dev", "-c", "user.email=dev@homelab.lan", "commit", "-q", "-m", "hooks")
    bare = tmp_path / "gitopsctl.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    return bare.as_uri(), git(work, "rev-parse", "HEAD")


@pytest.mark.parametrize("page", ["adopting.md", "bump-and-check.md"])
def test_the_documented_pre_commit_config_runs_from_a_git_url_at_a_sha(page, tmp_path, gitopsctl_remote):
    url, sha = gitopsctl_remote
    snippet = _snippet(page)
    assert "rev: v" not in snippet and "https://<gitea>/<you>/gitopsctl.git" in snippet
    config = snippet.replace("https://<gitea>/<you>/gitopsctl.git", url).replace("<commit-sha>", sha)
    # every placeholder outside comments was one of the two above
    assert "<" not in "".join(line.split("#")[0] for line in config.splitlines()), config
    project = tmp_path / "homelab"
    project.mkdir()
    git(project, "init", "-q", "--initial-branch=main")
    shutil.copytree(REPO_ROOT / "clusters", project / "clusters")
    shutil.copy(REPO_ROOT / "gitopsctl.yaml", project / "gitopsctl.yaml")
    (project / ".pre-commit-config.yaml").write_text(config)
    git(project, "add", "-A")
    git(project, "-c", "user.name=dev", "-c", "user.email=dev@homelab.lan", "commit", "-q", "-m", "homelab")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITOPSCTL_")}
    env.update(PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"), NO_COLOR="1",
               PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", PIP_NO_INDEX="1")
    result = subprocess.run([str(VENV_BIN / "pre-commit"), "run", "--all-files"], cwd=project,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("Passed") == 2, result.stdout
