"""Hostile YAML ends in exit 2 with file:line, quickly, in every command that reads YAML.

Each case drives the real CLI as a subprocess on a real git repository. Before the
bounded reading layer (gitopsctl.yamlsafe) a NUL gave exit 70 without a file name, deep
nesting a RecursionError (exit 70), an alias bomb kept check busy for minutes and a
50 MB file took check 108 s and 858 MB.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gitopsctl import yamlsafe
from gitopsctl.sandbox.lab.gitremote import git

REPO_ROOT = Path(__file__).resolve().parents[2]
POLICY = "flux-system:frontend"
NEW = f"{POLICY}=harbor.lan/homelab/frontend:main-9f8e7d6-1764200000"
MARKED_FILE = "clusters/homelab/apps/frontend/deployment.yaml"
BOUND = 20.0  # seconds; each case takes well under one

ALIAS_BOMB = "".join(
    [f'a0: &a0 [{",".join(["lol"] * 9)}]\n'] +
    [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9)] +
    ['image: harbor.lan/homelab/frontend:main-1a2b3c4-1 # {"$imagepolicy": "' + POLICY + '"}\n'])


def run(*args: str, cwd: Path, stdin: str | None = None,
        extra_env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITOPSCTL_")}
    env.update(extra_env or {})
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "gitopsctl", "--no-color", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120, input=stdin)
    return proc, time.monotonic() - start


@pytest.fixture
def homelab(tmp_path) -> Path:
    """A committed copy of this repository's clusters/ and gitopsctl.yaml."""
    root = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "clusters", root / "clusters")
    shutil.copy(REPO_ROOT / "gitopsctl.yaml", root / "gitopsctl.yaml")
    git(tmp_path, "init", "-q", "-b", "main", str(root))
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-q", "-m", "seed")
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".git" not in p.parts}


def marked_with(text: str, at: str = "        - name: frontend") -> str:
    """The repository's marked deployment with `text` inserted before line `at`."""
    original = (REPO_ROOT / MARKED_FILE).read_text()
    assert at in original
    return original.replace(at, text + at, 1)


NUL = marked_with("        # a comment with a NUL \x00 in it\n")
ESC = marked_with("      annotations: {note: \"colour \x1b[31m\"}\n", at="    spec:\n")
DEEP = marked_with("      nested: " + "[" * 5000 + "]" * 5000 + "\n", at="    spec:\n")
DEEP_BLOCK = marked_with("".join("  " * (3 + i) + f"k{i}:\n" for i in range(150))
                         + "  " * 153 + "end: 1\n", at="    spec:\n")

CASES = {
    "nul": (NUL, r"U\+0000"),
    "escape": (ESC, r"U\+001B"),
    "deep-flow": (DEEP, "nested more than 100 deep"),
    "deep-block": (DEEP_BLOCK, "nested more than 100 deep"),
    "alias-bomb": (ALIAS_BOMB, "alias bomb"),
}


def _assert_refused(proc, took: float, display: str, pattern: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "internal error" not in proc.stderr
    assert re.search(rf"{re.escape(display)}:\d+", proc.stderr), proc.stderr
    assert re.search(pattern, proc.stderr), proc.stderr
    assert took < BOUND


@pytest.mark.parametrize("case", sorted(CASES))
def test_check_refuses_hostile_yaml_with_file_and_line(homelab, case):
    text, pattern = CASES[case]
    (homelab / MARKED_FILE).write_text(text)
    proc, took = run("check", cwd=homelab)
    _assert_refused(proc, took, MARKED_FILE, pattern)


@pytest.mark.parametrize("case", sorted(CASES))
def test_explicit_bump_refuses_hostile_yaml_and_changes_nothing(homelab, case):
    text, pattern = CASES[case]
    (homelab / MARKED_FILE).write_text(text)
    git(homelab, "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-qam", case)
    before, head = snapshot(homelab), git(homelab, "rev-parse", "HEAD")
    proc, took = run("bump", "--path", "clusters", "--policy", NEW, "--no-commit", cwd=homelab)
    _assert_refused(proc, took, MARKED_FILE, pattern)
    assert snapshot(homelab) == before
    assert git(homelab, "rev-parse", "HEAD") == head


@pytest.mark.parametrize("case", ["nul", "alias-bomb", "deep-flow"])
def test_pipeline_bump_refuses_hostile_yaml_and_changes_nothing(homelab, case):
    text, pattern = CASES[case]
    (homelab / MARKED_FILE).write_text(text)
    git(homelab, "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-qam", case)
    before, head = snapshot(homelab), git(homelab, "rev-parse", "HEAD")
    proc, took = run("bump", "--service", "frontend", "--allow-unbuilt", "--no-push", cwd=homelab)
    _assert_refused(proc, took, MARKED_FILE, pattern)
    assert snapshot(homelab) == before
    assert git(homelab, "rev-parse", "HEAD") == head


def test_a_file_over_the_size_limit_is_refused_by_name(homelab):
    big = homelab / "clusters/homelab/apps/frontend/generated.yaml"
    doc = "- {name: item, value: 'some generated data that nobody reviews'}\n"
    big.write_text('image: x:1 # {"$imagepolicy": "' + POLICY + '"}\nitems:\n'
                   + doc * (yamlsafe.MAX_FILE_BYTES // len(doc) + 10))
    proc, took = run("check", cwd=homelab)
    assert proc.returncode == 2, proc.stderr
    assert "clusters/homelab/apps/frontend/generated.yaml" in proc.stderr
    assert "MiB" in proc.stderr and took < BOUND
    proc, took = run("bump", "--path", "clusters", "--policy", NEW, "--dry-run", cwd=homelab)
    assert proc.returncode == 2, proc.stderr
    assert "generated.yaml" in proc.stderr and took < BOUND


def test_a_big_file_without_marker_does_not_stop_bump(homelab):
    big = homelab / "clusters/homelab/apps/frontend/generated.yaml"
    big.write_text("items:\n" + "- x\n" * (yamlsafe.MAX_FILE_BYTES // 4 + 10))
    proc, took = run("bump", "--path", "clusters", "--policy", NEW, "--dry-run", cwd=homelab)
    assert proc.returncode == 0, proc.stderr
    assert "deployment.yaml" in proc.stdout and took < BOUND


@pytest.mark.parametrize("case", ["nul", "alias-bomb", "deep-flow"])
def test_config_refuses_hostile_yaml(homelab, case):
    config = homelab / "gitopsctl.yaml"
    original = config.read_text()
    hostile = {"nul": original.replace("\n", "\n# \x00\n", 1),
               "alias-bomb": original + "\nx-" + ALIAS_BOMB.replace("\na", "\nx-a"),
               "deep-flow": original + "\nx-deep: " + "[" * 3000 + "]" * 3000 + "\n"}[case]
    config.write_text(hostile)
    for args in (("config",), ("check",)):
        proc, took = run(*args, cwd=homelab)
        assert proc.returncode == 2, (args, proc.stdout + proc.stderr)
        assert re.search(r"gitopsctl\.yaml:\d+", proc.stderr), proc.stderr
        assert "internal error" not in proc.stderr and took < BOUND


@pytest.mark.parametrize("value", ["[1,", "&a [*a, *a]", "[" * 3000, "\x1b[31m"])
def test_a_hostile_config_override_from_the_environment_is_a_config_error(homelab, value):
    proc, took = run("config", cwd=homelab, extra_env={"GITOPSCTL_STAGE__DELAY": value})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "GITOPSCTL_STAGE__DELAY" in proc.stderr and "internal error" not in proc.stderr
    assert took < BOUND


@pytest.mark.parametrize("case", ["nul", "alias-bomb", "deep-flow"])
def test_seal_and_unseal_refuse_hostile_input_files(tmp_path, case):
    secret = ("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: backend\n"
              "stringData:\n  password: hunter2-but-longer\n")
    hostile = {"nul": secret.replace("name: db", "name: d\x00b"),
               "alias-bomb": secret + "x-" + ALIAS_BOMB.replace("\na", "\nx-a"),
               "deep-flow": secret + "x: " + "[" * 3000 + "]" * 3000 + "\n"}[case]
    (tmp_path / "in.yaml").write_text(hostile)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=sealed-secrets"],
                   check=True, capture_output=True, timeout=60)
    for args in (("seal", "--cert", str(cert), "-f", str(tmp_path / "in.yaml")),
                 ("unseal", "--key", str(key), "-f", str(tmp_path / "in.yaml"))):
        proc, took = run(*args, cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stderr)
        assert re.search(r"in\.yaml:\d+", proc.stderr), proc.stderr
        assert "internal error" not in proc.stderr and took < BOUND
        assert proc.stdout == ""


# ---------------------------------------------------------------- arbitrary bytes

FORBIDDEN = [c for c in range(0x20) if c not in (9, 10, 13)] + [0x7F, 0x80, 0x9F]


@pytest.fixture(scope="module")
def bump_repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bytes") / "repo"
    (root / "apps").mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    return root


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_arbitrary_bytes_in_a_marked_file_never_give_exit_70(bump_repo, data):
    original = (REPO_ROOT / MARKED_FILE).read_bytes()
    position = data.draw(st.integers(0, len(original)), label="position")
    inserted = data.draw(st.one_of(
        st.sampled_from(FORBIDDEN).map(lambda c: chr(c).encode()),
        st.binary(min_size=1, max_size=8)), label="inserted")
    text = original[:position] + inserted + original[position:]
    path = bump_repo / "apps" / "deployment.yaml"
    path.write_bytes(text)
    proc, took = run("bump", "--path", "apps", "--policy", NEW, "--no-commit", cwd=bump_repo)
    assert proc.returncode in (0, 2), proc.stderr
    assert "internal error" not in proc.stderr and took < BOUND
    if proc.returncode == 2:
        assert "apps/deployment.yaml" in proc.stderr, proc.stderr
        assert path.read_bytes() == text
    check, took = run("check", "apps", cwd=bump_repo)
    assert check.returncode in (0, 1, 2), check.stderr
    assert "internal error" not in check.stderr and took < BOUND


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=40))
def test_scan_text_raises_only_input_errors(noise):
    """The text-level scan (what stage's planner calls on git blobs) has the same bounds."""
    from gitopsctl.errors import InputError
    from gitopsctl.setters import scan_text

    text = 'image: x:1 # {"$imagepolicy": "a:b"}\n' + noise
    try:
        scan_text(text, "blob.yaml")
    except InputError as exc:
        assert exc.location is not None and exc.location.path == "blob.yaml"
