"""bump, stage and check read the files Flux's setter reader reads, and only those.

The rule is image-automation-controller's (internal/update/filereader.go, see
gitopsctl/setters.py): names ending in .yaml/.yml or exactly `Kustomization`, every
directory but .git, a parse only for files holding `"$imagepolicy"`, a file that does
not parse skipped unless it holds a marker being set. Worktree and commit tree (stage's
plan) apply the same rule; both are exercised on real files and a real git repository.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitopsctl import repo as gitrepo
from gitopsctl import setters
from gitopsctl.config import load as load_config
from gitopsctl.deploy.plan import plan_service
from gitopsctl.errors import InputError
from gitopsctl.sandbox.lab.gitremote import git
from gitopsctl.imageref import parse_reference
from gitopsctl.yamlsafe import HostileInput

from tests.fixtures.configs import MINIMAL

POLICY = "flux-system:frontend"
NEW = parse_reference("harbor.lan/homelab/frontend:main-9f8e7d6-1764200000")
OLD = "harbor.lan/homelab/frontend:main-1a2b3c4-1"
APPS = "clusters/homelab/apps/frontend"


def marked(policy: str = POLICY, suffix: str = "") -> str:
    return (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n"
            f"    - name: app\n      image: {OLD} # {{\"$imagepolicy\": \"{policy}{suffix}\"}}\n")


KUSTOMIZATION = ("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nimages:\n"
                 "  - name: frontend\n"
                 f"    newTag: main-1a2b3c4-1 # {{\"$imagepolicy\": \"{POLICY}:tag\"}}\n")
# A Helm template: Flux's own reason for screening (filereader.go); it does not parse.
HELM = ("apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n"
        "      containers:\n        - image: {{ .Values.image }} "
        '# {"$imagepolicy": "flux-system:other"}\n'
        "{{- if .Values.extra }}\n  extra: [\n{{- end }}\n")


def go_ext(name: str) -> str:
    """Go's filepath.Ext on a base name: from the last dot, or empty."""
    dot = name.rfind(".")
    return name[dot:] if dot >= 0 else ""


@given(st.text(alphabet=st.sampled_from("aKkyY.mlsuotizn-_"), min_size=1, max_size=16)
       | st.sampled_from([".yaml", ".yml", "Kustomization", "kustomization", "x.YAML", "a.yaml.bak",
                          "kustomization.yaml", "Kustomization.yaml", "values.json", "Dockerfile"]))
def test_flux_reads_exactly_the_names_filereader_reads(name):
    assert setters.flux_reads(name) == (go_ext(name) in (".yaml", ".yml")
                                        or name == "Kustomization")


def test_select_yaml_reads_what_flux_reads(tmp_path):
    files = {
        "deployment.yaml": marked(), "extra.yml": marked(), "overlay/Kustomization": KUSTOMIZATION,
        ".variants/hidden.yaml": marked(), ".yaml": marked(),
        # never read by Flux, whatever they hold
        "notes.json": marked(), "README.md": marked(), "kustomization": KUSTOMIZATION,
        "upper.YAML": marked(), "old.yaml.bak": marked(), ".git/config.yaml": marked(),
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    os.symlink(tmp_path / "overlay", tmp_path / "overlay-link")   # a directory: not descended
    selection = setters.select_yaml([tmp_path], tmp_path)
    got = {str(p.relative_to(tmp_path)) for p in selection.files}
    assert got == {"deployment.yaml", "extra.yml", "overlay/Kustomization",
                   ".variants/hidden.yaml", ".yaml"}


NAMES = st.sampled_from(["a.yaml", "b.yml", "Kustomization", "c.json", "kustomization",
                         "d.YAML", "e.yaml.orig", ".f.yaml", "g"])
DIRS = st.sampled_from(["", "sub/", ".hidden/", "x/.y/", "sub/deeper/"])


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(DIRS, NAMES), min_size=1, max_size=8, unique=True))
def test_worktree_and_commit_tree_select_the_same_files(tmp_path_factory, entries):
    """One rule: what bump reads in a checkout is what stage reads in the commit."""
    root = tmp_path_factory.mktemp("repo")
    git(root, "init", "-q", "-b", "main")
    scope = "apps"
    for directory, name in entries:
        path = root / scope / directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(marked())
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "tree")
    worktree = {str(p.relative_to(root)) for p in setters.select_yaml([root / scope], root).files}
    tree = {f.path for f in gitrepo.tree_files(root, "HEAD", [scope])
            if setters.tree_selected(f.path, [scope])}
    assert worktree == tree
    assert worktree == {f"{scope}/{d}{n}" for d, n in entries if setters.flux_reads(n)}


def test_a_file_named_in_the_paths_is_taken_whatever_its_name(tmp_path):
    compose = tmp_path / "compose"   # a VM's compose file: Flux never reads it, gitopsctl does
    compose.write_text(marked())
    assert setters.select_yaml([compose], tmp_path).files == [compose]
    assert setters.tree_selected("compose", ["compose"])
    assert not setters.tree_selected("dir/compose", ["dir"])


def test_only_files_holding_the_quoted_token_are_read(tmp_path):
    unquoted = tmp_path / "doc.yaml"
    unquoted.write_text("# see the $imagepolicy docs\nkey: [not: yaml\n")
    assert setters.read_if_marked(unquoted, "doc.yaml") is None
    quoted = tmp_path / "m.yaml"
    quoted.write_text(marked())
    assert setters.read_if_marked(quoted, "m.yaml") == marked()


def test_a_file_that_does_not_parse_is_skipped_like_flux_skips_it():
    result = setters.scan_for_update(HELM, "chart/deploy.yaml", None, [POLICY])
    assert isinstance(result, setters.UnreadFile)
    assert result.file == "chart/deploy.yaml" and result.line is not None
    assert "not read, as Flux does not read it" in str(result)


@pytest.mark.parametrize("text, kind", [
    (f"- image: {OLD} # {{\"$imagepolicy\": \"flux-system:other\"}}\n", "a list"),
    ('just a string # {"$imagepolicy": "flux-system:other"}\n', "a scalar"),
    (f"a: 1\n---\n- image: {OLD} # {{\"$imagepolicy\": \"flux-system:other\"}}\n", "a list"),
])
def test_a_document_kyaml_cannot_annotate_skips_the_whole_file(text, kind):
    result = setters.scan_for_update(text, "odd.yaml", None, [POLICY])
    assert isinstance(result, setters.UnreadFile) and kind in result.reason


def test_empty_and_null_documents_are_read():
    text = "---\n~\n---\n" + marked()
    scan = setters.scan_for_update(text, "m.yaml", None, [POLICY])
    assert isinstance(scan, setters.FileScan) and [m.policy for m in scan.markers] == [POLICY]


@pytest.mark.parametrize("suffix", ["", ":tag", ":name", ":digest"])
def test_a_broken_file_with_a_marker_being_set_is_an_error_at_file_line(suffix):
    text = marked(suffix=suffix) + "  broken: [\n"
    with pytest.raises(InputError) as caught:
        setters.scan_for_update(text, "apps/m.yaml", None, [POLICY])
    assert not isinstance(caught.value, setters.UnreadFile)
    assert caught.value.location.path == "apps/m.yaml" and caught.value.location.line == 10
    assert f"the marker for {POLICY} on line 8 cannot be set" in caught.value.message
    assert "Flux skips" in caught.value.hint


def test_a_top_level_list_holding_a_marker_being_set_is_an_error():
    with pytest.raises(InputError, match="top level is a list"):
        setters.scan_for_update(f'- image: {OLD} # {{"$imagepolicy": "{POLICY}"}}\n', "l.yaml",
                                None, [POLICY])


def test_hostile_input_is_still_refused_whatever_the_markers():
    with pytest.raises(HostileInput):
        setters.scan_for_update('a: "\x00" # {"$imagepolicy": "flux-system:other"}\n', "h.yaml",
                                None, [POLICY])


def test_stage_plan_reads_the_commit_with_the_same_rule(tmp_path):
    root = tmp_path / "repo"
    (root / APPS).mkdir(parents=True)
    (root / "gitopsctl.yaml").write_text(MINIMAL)
    files = {"deployment.yaml": marked(), "overlay/Kustomization": KUSTOMIZATION,
             ".variants/extra.yml": marked(), "notes.json": marked(), "README.md": marked(),
             "chart/templates/deploy.yaml": HELM, "broken.yaml": "key: [unclosed\n",
             "outside-scope-link.yaml": None, "alias.yaml": None}
    for rel, text in files.items():
        if text is not None:
            (root / APPS / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / APPS / rel).write_text(text)
    os.symlink("deployment.yaml", root / APPS / "alias.yaml")
    os.symlink("../../../../../etc/passwd.yaml", root / APPS / "outside-scope-link.yaml")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "cases")
    config = load_config(root / "gitopsctl.yaml", root=root)
    tip = git(root, "rev-parse", "HEAD")
    plan = plan_service(root, config, tip, "frontend", NEW, "unbuilt")
    assert sorted(plan.files) == [f"{APPS}/.variants/extra.yml", f"{APPS}/deployment.yaml",
                                  f"{APPS}/overlay/Kustomization"]
    assert "newTag: main-9f8e7d6-1764200000 #" in plan.files[f"{APPS}/overlay/Kustomization"][1]
    skipped = "\n".join(plan.skipped)
    assert f"{APPS}/chart/templates/deploy.yaml:" in skipped and "not read, as Flux" in skipped
    assert f"{APPS}/alias.yaml: left alone (a link; its target is scanned" in skipped
    assert f"{APPS}/outside-scope-link.yaml: left alone (link leaving the repository" in skipped
    assert "broken.yaml" not in skipped   # no token: never parsed, as in Flux


def test_stage_plan_refuses_a_broken_file_holding_the_services_marker(tmp_path):
    root = tmp_path / "repo"
    (root / APPS).mkdir(parents=True)
    (root / "gitopsctl.yaml").write_text(MINIMAL)
    (root / APPS / "deployment.yaml").write_text(marked() + "  broken: [\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "broken")
    config = load_config(root / "gitopsctl.yaml", root=root)
    with pytest.raises(InputError) as caught:
        plan_service(root, config, git(root, "rev-parse", "HEAD"), "frontend", NEW, "unbuilt")
    assert str(caught.value.location) == f"{APPS}/deployment.yaml:10:1"

