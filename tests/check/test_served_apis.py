"""GOC014 (apiVersion/kind not served) and GOC015 (strict schema) through `gitopsctl check`,
the real clusters/ tree against the table, and a property over random apiVersion/kind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gitopsctl import kubeapis, kubeschema
from gitopsctl.checks import apis
from gitopsctl.checks.documents import load, parse_documents
from gitopsctl.executables import find_tool
from gitopsctl.sandbox.lab.gitremote import git
from tests.fixtures.manifests import DEPLOYMENT, crd

REPO_ROOT = Path(__file__).resolve().parents[2]


def check(root: Path, *paths: str) -> tuple[int, list[dict]]:
    run = check_text(root, *paths, output="json")
    assert run.stdout.strip(), run.stderr
    return run.returncode, json.loads(run.stdout)["findings"]


def check_text(root: Path, *paths: str, output: str = "text") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITOPSCTL_")}
    return subprocess.run([sys.executable, "-m", "gitopsctl", "--no-color", "--output", output, "check", *paths],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def repo(tmp_path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")  # without a config, check reads what git sees
    (tmp_path / "clusters").mkdir()
    return tmp_path


def write(root: Path, rel: str, text: str) -> str:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return rel


def of_rule(found: list[dict], rule: str) -> list[dict]:
    return [f for f in found if f["rule"] == rule]


IMAGE_POLICY_V1BETA2 = """\
    # scanned by Flux
    apiVersion: image.toolkit.fluxcd.io/v1beta2
    kind: ImagePolicy
    metadata:
      name: frontend
      namespace: flux-system
    spec:
      imageRepositoryRef:
        name: frontend
      policy:
        numerical:
          order: asc
    """


def test_an_unserved_version_is_goc014_at_its_apiversion_line_with_the_version_to_use(repo):
    rel = write(repo, "clusters/image-policy.yaml", IMAGE_POLICY_V1BETA2)
    code, found = check(repo)
    assert code == 1
    [finding] = of_rule(found, "GOC014")
    assert (finding["file"], finding["line"], finding["column"]) == (rel, 2, 13)
    assert "ImagePolicy image.toolkit.fluxcd.io/v1beta2 is not served by Flux 2.9 / Kubernetes 1.33" \
        in finding["message"]
    assert "use `apiVersion: image.toolkit.fluxcd.io/v1`" in finding["hint"]
    text = check_text(repo)
    assert f"{rel}:2:13: GOC014 error" in text.stdout


def test_the_v1_object_passes(repo):
    write(repo, "clusters/image-policy.yaml", IMAGE_POLICY_V1BETA2.replace("v1beta2", "v1"))
    code, found = check(repo)
    assert (code, found) == (0, [])


def test_a_removed_builtin_version_names_the_group_that_replaced_it(repo):
    rel = write(repo, "clusters/ingress.yaml", """\
        apiVersion: extensions/v1beta1
        kind: Ingress
        metadata: {name: web}
        """)
    _, found = check(repo)
    [finding] = of_rule(found, "GOC014")
    assert finding["file"] == rel and finding["line"] == 1
    assert "use `apiVersion: networking.k8s.io/v1`" in finding["hint"]


def test_a_kind_nobody_serves_asks_for_its_crd(repo):
    write(repo, "clusters/cert.yaml", """\
        apiVersion: cert-manager.io/v1
        kind: Certificate
        metadata: {name: web}
        spec: {secretName: web-tls}
        """)
    _, found = check(repo)
    [finding] = of_rule(found, "GOC014")
    assert "commit the CustomResourceDefinition" in finding["hint"]


def test_an_unknown_field_is_goc015_at_that_field(repo):
    rel = write(repo, "clusters/deploy.yaml", DEPLOYMENT + "          imagePullPolice: Always\n")
    code, found = check(repo)
    assert code == 1
    [finding] = of_rule(found, "GOC015")
    assert (finding["file"], finding["line"], finding["column"]) == (rel, 13, 11)
    assert finding["message"] == ("Deployment 'web': unknown field "
                                  '"spec.template.spec.containers[0].imagePullPolice"')
    assert "Kubernetes 1.33, from kubernetes-validate" in finding["hint"]


def test_a_missing_required_field_points_at_its_parent_and_a_wrong_value_at_itself(repo):
    rel = write(repo, "clusters/policy.yaml", """\
        apiVersion: image.toolkit.fluxcd.io/v1
        kind: ImagePolicy
        metadata: {name: frontend, namespace: flux-system}
        spec:
          imageRepositoryRef:
            name: frontend
        ---
        apiVersion: image.toolkit.fluxcd.io/v1
        kind: ImagePolicy
        metadata: {name: backend, namespace: flux-system}
        spec:
          imageRepositoryRef: {name: backend}
          policy:
            numerical: {order: newest}
        """)
    _, found = check(repo)
    schema = sorted((f["line"], f["message"]) for f in of_rule(found, "GOC015"))
    assert schema == [(4, "ImagePolicy 'frontend': spec.policy: Required value"),
                      (14, "ImagePolicy 'backend': spec.policy.numerical.order: Unsupported value: "
                           '"newest": supported values: "asc", "desc"')]
    assert all(f["file"] == rel for f in found)


def test_a_crd_in_the_repository_serves_its_kind_and_judges_it(repo):
    write(repo, "clusters/crds/widgets.yaml", crd("example.com", "Widget", "widgets", """
        size: {type: integer}
        port: {x-kubernetes-int-or-string: true}
        extra: {type: object, x-kubernetes-preserve-unknown-fields: true}
        """, singular="widget", required=("size",)))
    rel = write(repo, "clusters/widget.yaml", """\
        apiVersion: example.com/v1
        kind: Widget
        metadata: {name: good, namespace: default}
        spec: {size: 3, port: http, extra: {anything: [1, 2]}}
        ---
        apiVersion: example.com/v1
        kind: Widget
        metadata: {name: bad, namespace: default}
        spec:
          size: three
          colour: red
        """)
    _, found = check(repo, "clusters/widget.yaml")
    assert of_rule(found, "GOC014") == []
    schema = sorted((f["file"], f["line"], f["message"]) for f in of_rule(found, "GOC015"))
    assert schema == [(rel, 10, "Widget 'bad': spec.size: Invalid value: \"three\": must be of type integer"),
                      (rel, 11, "Widget 'bad': unknown field \"spec.colour\"")]
    assert all("CustomResourceDefinition in this repository" in f["hint"] for f in of_rule(found, "GOC015"))
    (repo / "clusters/crds/widgets.yaml").unlink()
    _, found = check(repo)
    assert len(of_rule(found, "GOC014")) == 2


def test_a_flux_crd_in_the_repository_wins_over_gitopsctls_own_schema(repo):
    policy = write(repo, "clusters/policy.yaml", """\
        apiVersion: image.toolkit.fluxcd.io/v1
        kind: ImagePolicy
        metadata: {name: frontend, namespace: flux-system}
        spec:
          imageRepositoryRef: {name: frontend}
          policy: {numerical: {order: asc}}
          futureField: true
        """)
    _, found = check(repo, policy)
    assert [f["message"] for f in of_rule(found, "GOC015")] == [
        "ImagePolicy 'frontend': unknown field \"spec.futureField\""]
    assert "gitopsctl's partial Flux schema" in of_rule(found, "GOC015")[0]["hint"]
    write(repo, "clusters/flux-system/gotk-components.yaml",
          crd("image.toolkit.fluxcd.io", "ImagePolicy", "imagepolicies", """
              imageRepositoryRef: {type: object, properties: {name: {type: string}}}
              policy: {type: object, x-kubernetes-preserve-unknown-fields: true}
              futureField: {type: boolean}
              """))
    code, found = check(repo, policy)
    assert (code, found) == (0, [])


def test_kustomize_files_compose_files_and_patches_are_not_judged_as_objects(repo):
    write(repo, "clusters/app/kustomization.yaml", """\
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        resources: [deploy.yaml]
        patches:
          - path: replicas-patch.yaml
        """)
    write(repo, "clusters/app/deploy.yaml", """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec: {containers: [{name: web, image: "harbor.lan/homelab/web:v1"}]}
        """)
    patch = write(repo, "clusters/app/replicas-patch.yaml", """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          replicas: 2
          replicaz: 3
        """)
    write(repo, "clusters/vm/docker-compose.yml", """\
        services:
          web:
            image: harbor.lan/homelab/web:v1
            healthcheck: {test: ["CMD", "true"]}
        """)
    _, found = check(repo)
    api = of_rule(found, "GOC014") + of_rule(found, "GOC015")
    # the patch lacks the required selector and template by design; its typo still counts
    assert [(f["file"], f["line"], f["message"]) for f in api] == [
        (patch, 6, "Deployment 'web': unknown field \"spec.replicaz\"")]


def test_this_repositorys_clusters_tree_passes_check(tmp_path):
    shutil.copytree(REPO_ROOT / "clusters", tmp_path / "clusters")
    shutil.copy(REPO_ROOT / "gitopsctl.yaml", tmp_path / "gitopsctl.yaml")
    git(tmp_path, "init", "-q", "-b", "main")
    code, found = check(tmp_path)
    assert (code, found) == (0, [])


def _cluster_objects() -> list[tuple[str, dict]]:
    """Every API object of clusters/: each file's documents, and what kustomize builds."""
    objects = []
    for path in sorted((REPO_ROOT / "clusters").rglob("*.y*ml")):
        file, errors = load(path, str(path.relative_to(REPO_ROOT)))
        assert not errors
        if file.is_compose or path.name == "kustomization.yaml":
            continue
        objects += [(file.display, apis._plain(doc)) for doc in file.k8s_documents()]
    built = subprocess.run([find_tool("kubectl"), "kustomize", str(REPO_ROOT / "clusters" / "homelab")],
                           capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    objects += [("kustomize build clusters/homelab", apis._plain(doc)) for doc in parse_documents(built.stdout)
                if isinstance(doc, dict)]
    return objects


def test_every_object_in_clusters_is_served_and_strictly_valid():
    objects = _cluster_objects()
    kinds = {(obj["apiVersion"], obj["kind"]) for _, obj in objects}
    assert {("image.toolkit.fluxcd.io/v1", "ImageUpdateAutomation"), ("image.toolkit.fluxcd.io/v1", "ImagePolicy"),
            ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"), ("apps/v1", "Deployment"),
            ("bitnami.com/v1alpha1", "SealedSecret")} <= kinds
    for where, obj in objects:
        assert kubeapis.served(obj["apiVersion"], obj["kind"]), (where, obj["apiVersion"], obj["kind"])
        assert kubeschema.validate(obj) == [], (where, obj["kind"], obj.get("metadata", {}).get("name"))


# -- property: any apiVersion/kind, flagged iff the table does not serve it --------

_SERVED = sorted((r.api_version, r.kind) for r in kubeapis.RESOURCES)
_word = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF, blacklist_categories=("Cs", "Cc")),
                min_size=0, max_size=24)
_pair = st.one_of(
    st.sampled_from(_SERVED),
    st.tuples(st.sampled_from(_SERVED), _word).map(lambda p: (p[0][0] + p[1], p[0][1])),
    st.tuples(st.sampled_from(_SERVED), st.sampled_from(_SERVED)).map(lambda p: (p[0][0], p[1][1])),
    st.tuples(_word, _word))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pair=_pair, with_spec=st.booleans())
def test_random_api_versions_never_crash_and_are_flagged_iff_not_served(tmp_path, pair, with_spec):
    api_version, kind = pair
    doc = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x", "namespace": "default"}}
    if with_spec:
        doc["spec"] = {"anything": [1, "two", None]}
    path = tmp_path / "object.yaml"
    path.write_text(json.dumps(doc))  # JSON is YAML: any string survives quoting
    file, errors = load(path, "object.yaml")
    assert not errors and file is not None
    found = list(apis.served_and_valid([file], {}, set()))
    flagged = [f for f in found if f.rule == "GOC014"]
    skipped = api_version == "builtin" or api_version.split("/")[0] in ("kustomize.config.k8s.io",
                                                                         "config.kubernetes.io")
    expected = not skipped and not kubeapis.served(api_version, kind)
    assert bool(flagged) == expected, (api_version, kind, found)
    assert all(f.location.path == "object.yaml" and f.location.line == 1 for f in found)
    if not expected:
        assert all(f.rule == "GOC015" for f in found)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _word,
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_word, inner, max_size=3),
                     max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pair=st.sampled_from(_SERVED), body=st.dictionaries(st.sampled_from(["spec", "metadata", "status", "data",
                                                                         "encryptedData"]) | _word, _json,
                                                          max_size=4))
def test_any_body_of_a_served_kind_gives_field_findings_never_a_crash(tmp_path, pair, body):
    doc = {**body, "apiVersion": pair[0], "kind": pair[1]}
    path = tmp_path / "object.yaml"
    path.write_text(json.dumps(doc))
    file, errors = load(path, "object.yaml")
    assert not errors and file is not None
    found = list(apis.served_and_valid([file], {}, set()))
    assert all(f.rule == "GOC015" and f.location.line == 1 for f in found)
    for violation in kubeschema.validate(doc):
        node = doc  # every reported path leads into the document up to its last part
        for part in violation.path[:-1]:
            node = node[part]
        assert isinstance(node, (dict, list))


def test_every_builtin_kind_of_the_table_has_its_upstream_schema_and_flux_kinds_ours():
    for resource in kubeapis.RESOURCES:
        assert kubeschema.has_schema(resource.api_version, resource.kind), resource
    assert kubeapis.preferred_api_version("image.toolkit.fluxcd.io/v1beta2", "ImageUpdateAutomation") == \
        "image.toolkit.fluxcd.io/v1"
    assert kubeapis.preferred_api_version("autoscaling/v2beta2", "HorizontalPodAutoscaler") == "autoscaling/v2"
    assert kubeapis.preferred_api_version("example.com/v1", "Event") is None  # core and events.k8s.io both
