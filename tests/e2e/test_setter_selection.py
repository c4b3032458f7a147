"""bump and stage edit exactly what Flux's image automation would edit (issue 13, point 6).

A repository holds every kind of input Flux's setter reader treats in its own way
(gitopsctl/setters.py names the source): a `Kustomization`, a `.yml` in a
dot-directory, marker comments in files Flux never reads, a broken YAML file, a Helm
template naming another policy, links. The real CLI runs against a real bare remote
(`bump`) and the whole lab (`stage`); what lands on the remote is compared with what
Flux would commit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gitopsctl.sandbox.lab.gitremote import git

from tests.e2e.drive import build, run_json, served

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
POLICY = "flux-system:frontend"
NEW_REF = "harbor.lan/homelab/frontend:main-9f8e7d6-1764200000"
APP = "clusters/homelab/apps/frontend"
OLD = "harbor.lan/homelab/frontend:main-1a2b3c4-1"


def pod(policy: str = POLICY) -> str:
    return ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: extra\nspec:\n  containers:\n"
            f"    - name: app\n      image: {OLD} # {{\"$imagepolicy\": \"{policy}\"}}\n")


KUSTOMIZATION = ("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nimages:\n"
                 "  - name: frontend\n    newName: old.registry.lan/frontend "
                 f'# {{"$imagepolicy": "{POLICY}:name"}}\n'
                 f'    newTag: main-1a2b3c4-1 # {{"$imagepolicy": "{POLICY}:tag"}}\n')
HELM = ("apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n"
        "      containers:\n        - image: {{ .Values.image }} "
        '# {"$imagepolicy": "flux-system:backend"}\n'
        "{{- if .Values.extra }}\n  extra: [\n{{- end }}\n")

# Relative to the frontend's path. Flux reads and sets the first three; never the rest.
FLUX_SETS = {"overlay/Kustomization": KUSTOMIZATION, ".variants/extra.yml": pod()}
NEVER_READ = {"notes.json": pod(), "README.md": pod(), "upper.YAML": pod(),
              "kustomization": KUSTOMIZATION, "old.yaml.bak": pod(),
              "broken.yaml": "# a work in progress, $imagepolicy to come\nkey: [unclosed\n"}
LINKS = {"alias.yaml": "deployment.yaml", "gone.yaml": "missing.yaml", "overlay-link": "overlay"}


def add_cases(work: Path, *, helm: bool) -> None:
    app = work / APP
    for rel, text in {**FLUX_SETS, **NEVER_READ, **({"chart/templates/deploy.yaml": HELM}
                                                     if helm else {})}.items():
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        (app / rel).write_text(text)
    for name, target in LINKS.items():
        os.symlink(target, app / name)


def tree(repo: Path, ref: str) -> dict[str, tuple[str, str]]:
    """path -> (mode, blob) under the frontend's path at `ref`."""
    rows = {}
    for line in git(repo, "ls-tree", "-r", ref, "--", APP).splitlines():
        meta, path = line.split("\t", 1)
        mode, _, blob = meta.split()
        rows[path[len(APP) + 1:]] = (mode, blob)
    return rows


def changed_files(repo: Path, before: str, after: str) -> set[str]:
    out = git(repo, "diff", "--name-only", before, after, "--", APP)
    return {p[len(APP) + 1:] for p in out.splitlines()}


def assert_untouched_except(repo: Path, before: str, after: str, edited: set[str]) -> None:
    old, new = tree(repo, before), tree(repo, after)
    assert set(old) == set(new)
    for rel in set(old) - edited:
        assert old[rel] == new[rel], rel
    for rel in LINKS:
        assert new[rel][0] == "120000", rel


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITOPSCTL_")}
    return subprocess.run([sys.executable, "-m", "gitopsctl", "--no-color", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def cases_remote(make_git_remote):
    remote = make_git_remote({"clusters": REPO_ROOT / "clusters",
                              "gitopsctl.yaml": REPO_ROOT / "gitopsctl.yaml"},
                             files={".gitignore": ".gitopsctl/\n"})
    add_cases(remote.work, helm=False)
    remote.commit_all("every kind of input Flux's setter reader meets")
    remote.push()
    return remote


def test_bump_sets_exactly_the_markers_flux_sets(cases_remote):
    remote = cases_remote
    before = remote.head()
    result = run("--output", "json", "bump", "--policy", f"{POLICY}={NEW_REF}", cwd=remote.work)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    edited = {"deployment.yaml", *FLUX_SETS}
    assert {c["file"][len(APP) + 1:] for c in doc["changes"]} == edited
    assert {c["setter"] for c in doc["changes"]} == {POLICY, f"{POLICY}:name", f"{POLICY}:tag"}
    assert remote.remote_head() == remote.head() != before
    assert changed_files(remote.work, before, "origin/main") == edited
    assert_untouched_except(remote.work, before, "origin/main", edited)
    kustomization = git(remote.work, "show", f"origin/main:{APP}/overlay/Kustomization")
    assert "newTag: main-9f8e7d6-1764200000 #" in kustomization
    assert git(remote.work, "status", "--porcelain") == ""


def test_bump_dry_run_lists_the_same_files_and_writes_nothing(cases_remote):
    remote = cases_remote
    result = run("--output", "json", "bump", "--path", APP, "--policy", f"{POLICY}={NEW_REF}",
                 "--dry-run", cwd=remote.work)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert {c["file"][len(APP) + 1:] for c in doc["changes"]} == {"deployment.yaml", *FLUX_SETS}
    assert {Path(s["file"]).name for b in doc["bumps"] for s in b["skipped_links"]} == {"gone.yaml"}
    assert git(remote.work, "status", "--porcelain") == ""


def test_bump_goes_past_a_broken_template_naming_another_policy(cases_remote):
    remote = cases_remote
    (remote.work / APP / "chart/templates").mkdir(parents=True)
    (remote.work / APP / "chart/templates/deploy.yaml").write_text(HELM)
    remote.commit_all("a chart template for another policy")
    result = run("--output", "json", "bump", "--policy", f"{POLICY}={NEW_REF}", "--no-commit",
                 cwd=remote.work)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert any(n.startswith(f"{APP}/chart/templates/deploy.yaml:") and "not read, as Flux" in n
               for n in doc["notes"]), doc["notes"]
    assert {c["file"][len(APP) + 1:] for c in doc["changes"]} == {"deployment.yaml", *FLUX_SETS}


def test_stage_deploys_what_flux_would_set_past_input_flux_skips(shared_lab):
    lab = shared_lab
    work = lab.remote.work
    git(work, "pull", "-q", "--ff-only", "origin", "main")
    add_cases(work, helm=True)
    lab.remote.commit_all("every kind of input Flux's setter reader meets, a chart template too")
    lab.remote.push()
    before = lab.remote.remote_head()
    sha = lab.commit_app_change({"examples/frontend/www/index.html": "selection\n",
                                 "examples/backend/www/index.html": "selection\n"},
                                "app: selection")
    build(lab, sha)
    try:
        code, doc, err = run_json(lab, "stage", "--source", sha)
        assert code == 0, err
        frontend = next(p for p in doc["plan"] if p["service"] == "frontend")
        edited = {"deployment.yaml", *FLUX_SETS}
        assert {f[len(APP) + 1:] for f in frontend["files"]} == edited
        skipped = "\n".join(frontend["skipped"])
        assert f"{APP}/chart/templates/deploy.yaml:" in skipped, skipped
        assert "not read, as Flux does not read it" in skipped
        assert f"{APP}/gone.yaml: left alone" in skipped
        assert not any(name in skipped for name in NEVER_READ), skipped
        git(work, "fetch", "-q", "origin")
        assert changed_files(work, before, "origin/main") == edited
        assert_untouched_except(work, before, "origin/main", edited)
        assert served(lab) == {"frontend": sha, "backend": sha}
    finally:
        git(work, "pull", "-q", "--ff-only", "origin", "main")
        git(work, "rm", "-q", "-r", *(f"{APP}/{p}" for p in
                                      ["overlay", ".variants", "chart", *NEVER_READ, *LINKS]))
        lab.remote.commit_all("drop the selection cases")
        lab.remote.push()


def test_stage_refuses_a_broken_file_holding_the_marker_it_must_set(shared_lab):
    lab = shared_lab
    work = lab.remote.work
    git(work, "pull", "-q", "--ff-only", "origin", "main")
    broken = f"{APP}/.variants/broken.yml"
    (work / broken).parent.mkdir(parents=True, exist_ok=True)
    (work / broken).write_text(pod() + "  extra: [\n")
    lab.remote.commit_all("a broken file holding the frontend's marker")
    lab.remote.push()
    sha = lab.commit_app_change({"examples/frontend/www/index.html": "refused\n",
                                 "examples/backend/www/index.html": "refused\n"}, "app: refused")
    build(lab, sha)
    tip = lab.remote.remote_head()
    live = served(lab)
    try:
        code, doc, err = run_json(lab, "stage", "--source", sha)
        assert code == 2, (doc, err)
        assert f"{broken}:10:1" in err and f"marker for {POLICY} on line 8" in err, err
        assert lab.remote.remote_head() == tip   # planned before the first push: nothing live
        assert served(lab) == live
    finally:
        git(work, "pull", "-q", "--ff-only", "origin", "main")
        git(work, "rm", "-q", "-r", f"{APP}/.variants")
        lab.remote.commit_all("drop the broken file")
        lab.remote.push()
