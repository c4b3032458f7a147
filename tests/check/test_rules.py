"""`gitopsctl check` on a repository with one mistake per rule, and on this repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gitopsctl.checks import runner
from gitopsctl.checks.tools import compose_config, find_tool
from gitopsctl.sandbox.lab.gitremote import git

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("GITOPSCTL_")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "gitopsctl", "--no-color", *args], cwd=cwd,
                          env=full, capture_output=True, text=True, timeout=120)


@pytest.fixture
def homelab(tmp_path) -> Path:
    """A copy of this repository's clusters/ and gitopsctl.yaml: clean to begin with. A git
    repository: check looks things up (ImagePolicies, Flux Kustomizations) in what git sees."""
    shutil.copytree(REPO_ROOT / "clusters", tmp_path / "clusters")
    shutil.copy(REPO_ROOT / "gitopsctl.yaml", tmp_path / "gitopsctl.yaml")
    git(tmp_path, "init", "-q", "-b", "main")
    return tmp_path


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def findings(root: Path, *paths: str) -> list:
    report = runner.run(root, [root / p for p in paths], root / "gitopsctl.yaml", environ={})
    return report.findings


def rules_at(found) -> set[tuple[str, str]]:
    return {(f.rule, str(f.location)) for f in found}


def test_this_repository_passes(tmp_path):
    result = run_cli("check", cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 error(s)" in result.stdout


def test_clean_copy_has_no_findings(homelab):
    assert findings(homelab) == []


def test_parse_errors_and_duplicate_keys(homelab):
    write(homelab, "clusters/homelab/apps/frontend/broken.yaml", "a: [1,\nb: 2\n")
    write(homelab, "clusters/homelab/apps/frontend/dup.yaml", "a: 1\nb: 2\na: 3\n")
    found = findings(homelab)
    rules = {(f.rule, f.location.path, f.location.line) for f in found}
    assert ("GOC001", "clusters/homelab/apps/frontend/dup.yaml", 3) in rules
    assert any(f.rule == "GOC001" and f.location.path.endswith("broken.yaml") and f.location.line
               and f.location.column for f in found)


def test_kustomize_build_failure(homelab):
    write(homelab, "clusters/homelab/apps/frontend/kustomization.yaml", """\
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        resources:
          - deployment.yaml
          - missing.yaml
        """)
    found = [f for f in findings(homelab) if f.rule == "GOC002"]
    assert [str(f.location) for f in found] == ["clusters/homelab/apps/frontend/kustomization.yaml:1"]
    assert "missing.yaml" in found[0].message


def test_plaintext_secret_and_credentials_never_print_the_value(homelab):
    write(homelab, "clusters/homelab/apps/frontend/secret.yaml", """\
        apiVersion: v1
        kind: Secret
        metadata:
          name: db
        stringData:
          password: hunter2-very-secret
        """)
    write(homelab, "clusters/homelab/apps/frontend/config.yaml", """\
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: app
        data:
          DB_PASSWORD: s3cr3t-literal
          api_key: ${API_KEY}
          url: postgres://app:pw-in-url@db:5432/app
          secretName: not-a-secret
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: x}
        spec:
          template:
            spec:
              containers:
                - name: x
                  image: harbor.lan/homelab/x:v1
                  env:
                    - name: API_TOKEN
                      value: tok-literal-123
                    - name: API_TOKEN_FILE
                      valueFrom: {secretKeyRef: {name: s, key: k}}
        """)
    found = findings(homelab)
    at = rules_at(found)
    assert ("GOC003", "clusters/homelab/apps/frontend/secret.yaml:2:7") in at
    assert ("GOC004", "clusters/homelab/apps/frontend/config.yaml:6:16") in at
    assert ("GOC004", "clusters/homelab/apps/frontend/config.yaml:8:8") in at
    assert ("GOC004", "clusters/homelab/apps/frontend/config.yaml:22:22") in at
    assert len([f for f in found if f.rule == "GOC004"]) == 3
    text = json.dumps([f.to_dict() for f in found])
    for secret in ("hunter2", "s3cr3t", "pw-in-url", "tok-literal"):
        assert secret not in text


def test_unpinned_and_invalid_images(homelab):
    write(homelab, "clusters/homelab/apps/frontend/jobs.yaml", """\
        apiVersion: batch/v1
        kind: Job
        metadata: {name: j}
        spec:
          template:
            spec:
              containers:
                - {name: a, image: busybox}
                - {name: b, image: "busybox:latest"}
                - {name: c, image: "busybox:latest@sha256:%s"}
                - {name: d, image: Busybox:1}
                - {name: e, image: busybox:1.36}
        """ % ("a" * 64))
    write(homelab, "clusters/homelab/apps/frontend/kustomization.yaml", """\
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        resources: [deployment.yaml, service.yaml, jobs.yaml]
        images:
          - name: busybox
            newTag: latest
          - name: harbor.lan/homelab/frontend
            newTag: main-1a2b3c4-1
        """)
    found = [f for f in findings(homelab) if f.rule == "GOC005"]
    assert [(f.location.path.rsplit("/", 1)[1], f.location.line, f.severity) for f in found] == [
        ("jobs.yaml", 8, "error"), ("jobs.yaml", 9, "error"), ("jobs.yaml", 11, "error"),
        ("kustomization.yaml", 6, "error")]
    assert "no tag" in found[0].message and "latest" in found[1].message


def test_marker_naming_an_unknown_policy_and_malformed_markers(homelab):
    write(homelab, "clusters/homelab/apps/frontend/extra.yaml", """\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: m}
        data:
          a: harbor.lan/homelab/x:v1 # {"$imagepolicy": "flux-system:nope"}
          b: harbor.lan/homelab/x:v1 # {"$imagepolicy": "flux-system"}
        """)
    found = findings(homelab)
    assert ("GOC006", "clusters/homelab/apps/frontend/extra.yaml:5:6") in rules_at(found)
    assert ("GOC011", "clusters/homelab/apps/frontend/extra.yaml:6:6") in rules_at(found)


def test_service_without_marker(homelab):
    compose = homelab / "clusters/homelab/backend-vm/docker-compose.yml"
    compose.write_text(compose.read_text().replace(' # {"$imagepolicy": "flux-system:backend"}', ""))
    found = [f for f in findings(homelab) if f.rule == "GOC007"]
    assert len(found) == 1 and "'backend'" in found[0].message
    backend_line = (homelab / "gitopsctl.yaml").read_text().splitlines().index("  backend:") + 1
    assert str(found[0].location) == f"gitopsctl.yaml:{backend_line}"


def test_compose_invalid_and_without_healthcheck(homelab):
    write(homelab, "clusters/homelab/backend-vm/compose.extra.yml", """\
        services:
          worker:
            image: harbor.lan/homelab/worker:v1
            restart_policy_typo: always
        """)
    found = [f for f in findings(homelab) if f.rule in ("GOC008", "GOC009")]
    assert {(f.rule, f.severity, f.location.line) for f in found} == {
        ("GOC008", "error", 1), ("GOC009", "warning", 2)}
    assert "restart_policy_typo" in found[0].message


def test_compose_config_needs_no_docker_engine(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such-engine.sock")
    good = write(tmp_path, "docker-compose.yml", """\
        services:
          web:
            image: harbor.lan/homelab/web:v1
        """)
    assert find_tool("docker-compose") is not None
    assert compose_config(good, "docker-compose.yml") is None


def test_two_writers(homelab):
    write(homelab, "clusters/homelab/image-automation/update.yaml", """\
        apiVersion: image.toolkit.fluxcd.io/v1
        kind: ImageUpdateAutomation
        metadata:
          name: unmanaged
          namespace: flux-system
        spec:
          interval: 30m
          sourceRef: {kind: GitRepository, name: flux-system}
          git:
            commit:
              author: {name: fluxcdbot, email: flux@homelab.lan}
          update:
            path: ./clusters/homelab/apps
            strategy: Setters
        """)
    found = [f for f in findings(homelab) if f.rule == "GOC010"]
    assert [(f.location.path, f.severity) for f in found] == [
        ("clusters/homelab/apps/frontend/deployment.yaml", "error")]
    # suspended: no finding
    update = homelab / "clusters/homelab/image-automation/update.yaml"
    update.write_text(update.read_text().replace("interval: 30m", "interval: 30m\n  suspend: true"))
    assert not [f for f in findings(homelab) if f.rule == "GOC010"]


def test_cli_output_exit_code_and_json(homelab):
    write(homelab, "clusters/homelab/apps/frontend/pod.yaml", """\
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          containers: [{name: p, image: "busybox:latest"}]
        """)
    result = run_cli("check", cwd=homelab)
    assert result.returncode == 1
    assert ("clusters/homelab/apps/frontend/pod.yaml:5:33: GOC005 error: image 'busybox:latest' "
            "uses the moving tag latest") in result.stdout
    assert "  hint: pin it" in result.stdout
    doc = json.loads(run_cli("-o", "json", "check", cwd=homelab).stdout)
    assert doc["errors"] == 1 and doc["ok"] is False
    assert doc["findings"][0]["rule"] == "GOC005" and doc["findings"][0]["line"] == 5
    # explicit paths check only those files
    only = run_cli("check", "clusters/homelab/image-automation", cwd=homelab)
    assert only.returncode == 0, only.stdout
