"""`gitopsctl bump --path ... --policy ...` as a user runs it: a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

DIGEST = "sha256:" + "12" * 32
NEW = f"harbor.lan/homelab/frontend:main-9f8e7d6-1764200000@{DIGEST}"

DEPLOYMENT = textwrap.dedent("""\
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: web
    spec:
      template:
        spec:
          containers:
            - name: web
              image: harbor.lan/homelab/frontend:main-1a2b3c4-1764160000 # {"$imagepolicy": "flux-system:frontend"}
    """)
KUSTOMIZATION = ("images:\r\n- name: web\r\n"
                 "  newTag: \"main-1a2b3c4-1764160000\" # {\"$imagepolicy\": \"flux-system:frontend:tag\"}\r\n"
                 "  digest: x # {\"$imagepolicy\": \"flux-system:frontend:digest\"}")


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITOPSCTL_")}
    return subprocess.run([sys.executable, "-m", "gitopsctl", "--no-color", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=60)


def tree(tmp_path: Path) -> Path:
    apps = tmp_path / "apps"
    (apps / "web").mkdir(parents=True)
    (apps / "web" / "deployment.yaml").write_text(DEPLOYMENT)
    (apps / "web" / "kustomization.yaml").write_bytes(KUSTOMIZATION.encode())
    (apps / "web" / "notes.txt").write_text('image: x # {"$imagepolicy": "flux-system:frontend"}\n')
    (apps / "other.yml").write_text("a: 1\n")
    return apps


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_no_commit_edits_in_place_and_prints_each_change(tmp_path):
    apps = tree(tmp_path)
    result = run("bump", "--path", "apps", "--policy", f"flux-system:frontend={NEW}", "--no-commit",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert ("apps/web/deployment.yaml:10: flux-system:frontend: "
            "harbor.lan/homelab/frontend:main-1a2b3c4-1764160000 -> " + NEW) in out
    assert "apps/web/kustomization.yaml:3: flux-system:frontend:tag: main-1a2b3c4-1764160000 -> " \
           "main-9f8e7d6-1764200000" in out
    assert f"apps/web/kustomization.yaml:4: flux-system:frontend:digest: x -> {DIGEST}" in out
    assert (apps / "web" / "deployment.yaml").read_text() == DEPLOYMENT.replace(
        "harbor.lan/homelab/frontend:main-1a2b3c4-1764160000", NEW)
    # CRLF, quoting and the missing final newline survive
    assert (apps / "web" / "kustomization.yaml").read_bytes() == KUSTOMIZATION.replace(
        "main-1a2b3c4-1764160000", "main-9f8e7d6-1764200000").replace("x #", DIGEST + " #").encode()
    assert "notes.txt" not in out  # only YAML files are eligible
    assert not list(apps.rglob("*.tmp"))


def test_dry_run_writes_nothing_and_json_lists_the_changes(tmp_path):
    apps = tree(tmp_path)
    before = snapshot(apps)
    result = run("--output", "json", "bump", "--path", "apps", "--policy",
                 f"flux-system:frontend={NEW}", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["dry_run"] is True and doc["changed"] is True and doc["ok"] is True
    assert [(c["file"], c["line"], c["setter"]) for c in doc["changes"]] == [
        ("apps/web/deployment.yaml", 10, "flux-system:frontend"),
        ("apps/web/kustomization.yaml", 3, "flux-system:frontend:tag"),
        ("apps/web/kustomization.yaml", 4, "flux-system:frontend:digest")]
    assert doc["changes"][0]["old"].endswith("1764160000") and doc["changes"][0]["new"] == NEW
    assert snapshot(apps) == before


def test_invalid_reference_is_exit_2_and_nothing_is_written(tmp_path):
    from gitopsctl.commands import Context
    from gitopsctl.bumping import bump
    from gitopsctl.errors import GitopsctlError

    apps = tree(tmp_path)
    before = snapshot(apps)
    result = run("bump", "--path", "apps", "--policy",
                 "flux-system:frontend=harbor.lan/homelab/Frontend:v1", "--no-commit", cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "hint:" in result.stderr and "Traceback" not in result.stderr
    ctx = Context(repo=tmp_path, config_path=tmp_path / "gitopsctl.yaml", environ={})
    for bad in ["harbor.lan/homelab/frontend:", "frontend@sha256:12", "harbor.lan/homelab/frontend"]:
        try:
            bump(ctx, paths=[apps], policies=[f"flux-system:frontend={bad}"], commit=False)
        except GitopsctlError as exc:
            assert exc.exit_code == 2 and exc.hint
        else:
            raise AssertionError(f"{bad} was accepted")
    assert snapshot(apps) == before


def test_a_file_that_fails_to_parse_stops_every_write(tmp_path):
    apps = tree(tmp_path)
    (apps / "zz-broken.yaml").write_text('a: b # {"$imagepolicy": "flux-system:frontend"}\n'
                                         'c: [unclosed\n')
    before = snapshot(apps)
    result = run("bump", "--path", "apps", "--policy", f"flux-system:frontend={NEW}", "--no-commit",
                 cwd=tmp_path)
    assert result.returncode == 2
    assert "apps/zz-broken.yaml:" in result.stderr and "not valid YAML" in result.stderr
    location = result.stderr.split("apps/zz-broken.yaml:", 1)[1].split(":")[:2]
    assert all(part.strip().isdigit() for part in location)  # file:line:column
    assert snapshot(apps) == before


def test_no_change_is_exit_0(tmp_path):
    tree(tmp_path)
    args = ("bump", "--path", "apps", "--policy", f"flux-system:frontend={NEW}", "--no-commit")
    assert run(*args, cwd=tmp_path).returncode == 0
    again = run(*args, cwd=tmp_path)
    assert again.returncode == 0 and "no change" in again.stdout


def test_bad_policy_argument_is_a_usage_error(tmp_path):
    tree(tmp_path)
    result = run("bump", "--path", "apps", "--policy", "frontend=" + NEW, "--no-commit", cwd=tmp_path)
    assert result.returncode == 2 and "NAMESPACE:NAME=IMAGE_REF" in result.stderr
