"""The emulator serves exactly gitopsctl.kubeapis' table, refuses the rest as kube-apiserver
does, and validates writes strictly: the real kubectl and the real Python client see the
errors a cluster on Flux 2.9 / Kubernetes 1.33 gives them."""

from __future__ import annotations

import json
import subprocess

import pytest
import requests
from kubernetes import client, config

from gitopsctl import kubeapis
from gitopsctl.executables import find_tool
from gitopsctl.sandbox.lab.kube import KubeEmulator
from gitopsctl.sandbox.lab.kube.store import DEPLOYMENTS, KUSTOMIZATIONS
from tests.fixtures.manifests import DEPLOYMENT

NOT_FOUND = "the server could not find the requested resource"

KUSTOMIZATION = """\
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: apps, namespace: flux-system}
spec:
  interval: 10m
  prune: true
  path: ./apps
  sourceRef: {kind: GitRepository, name: flux-system}
"""


@pytest.fixture
def emulator(tmp_path):
    with KubeEmulator(tmp_path, simulate=False) as kube:
        yield kube


def kubectl(kube, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([find_tool("kubectl"), "--kubeconfig", str(kube.kubeconfig), *args], input=stdin,
                          capture_output=True, text=True, timeout=60)


def raw(kube, method: str, path: str, body: dict | None = None, content_type: str = "application/json",
        **params: str) -> requests.Response:
    ca = kube.workdir / "ca.crt"
    ca.write_bytes(kube.api.ca_pem)
    return requests.request(method, kube.api.url + path, params=params, verify=str(ca), timeout=30,
                            headers={"Authorization": f"Bearer {kube.token}", "Content-Type": content_type},
                            data=json.dumps(body) if body is not None else None)


def custom_api(kube) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(config.new_client_from_config(str(kube.kubeconfig)))


def test_api_versions_and_resources_are_exactly_the_table(emulator):
    versions = kubectl(emulator, "api-versions")
    assert versions.returncode == 0, versions.stderr
    expected = {f"{g}/{v}" if g else v for g, vs in kubeapis.group_versions() for v in vs}
    assert set(versions.stdout.split()) == expected
    assert "image.toolkit.fluxcd.io/v1" in expected and "image.toolkit.fluxcd.io/v1beta2" not in expected

    listed = kubectl(emulator, "api-resources", "--no-headers", "-o", "name")
    assert listed.returncode == 0, listed.stderr
    names = {f"{r.plural}.{r.group}" if r.group else r.plural for r in kubeapis.RESOURCES}
    assert set(listed.stdout.split()) == names

    wide = kubectl(emulator, "api-resources", "--api-group", "image.toolkit.fluxcd.io", "--no-headers")
    rows = {line.split()[0]: line.split() for line in wide.stdout.strip().splitlines()}
    assert rows["imageupdateautomations"] == ["imageupdateautomations", "iua,imgupd,imgauto",
                                              "image.toolkit.fluxcd.io/v1", "true", "ImageUpdateAutomation"]

    version = kubectl(emulator, "version", "-o", "json")
    assert json.loads(version.stdout)["serverVersion"]["minor"] == "33"


def test_kubectl_apply_of_an_unserved_version_fails_with_kubectls_own_error(emulator):
    automation = ("apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageUpdateAutomation\n"
                  "metadata: {name: homelab, namespace: flux-system}\n"
                  "spec: {interval: 30m, sourceRef: {kind: GitRepository, name: flux-system}}\n")
    for validate in ("--validate=strict", "--validate=false"):
        run = kubectl(emulator, "apply", validate, "-f", "-", stdin=automation)
        assert run.returncode == 1
        assert 'no matches for kind "ImageUpdateAutomation" in version "image.toolkit.fluxcd.io/v1beta2"' \
            in run.stderr, run.stderr
    get = kubectl(emulator, "get", "imageupdateautomations.v1beta2.image.toolkit.fluxcd.io", "-A")
    assert get.returncode == 1
    assert 'the server doesn\'t have a resource type "imageupdateautomations"' in get.stderr


def test_unserved_paths_get_the_api_servers_plain_404(emulator):
    api = custom_api(emulator)
    with pytest.raises(client.ApiException) as refused:
        api.list_namespaced_custom_object("image.toolkit.fluxcd.io", "v1beta2", "flux-system", "imagepolicies")
    assert (refused.value.status, refused.value.body) == (404, "404 page not found\n")
    for path in ("/apis/example.com/v1/namespaces/default/widgets", "/apis/image.toolkit.fluxcd.io/v1beta2",
                 "/api/v1/namespaces/default/deployments", "/apis/apps/v1/namespaces/default/podz"):
        answer = raw(emulator, "GET", path)
        assert (answer.status_code, answer.text) == (404, "404 page not found\n"), path
        assert answer.headers["Content-Type"].startswith("text/plain")
    run = kubectl(emulator, "get", "--raw", "/apis/image.toolkit.fluxcd.io/v1beta2/imagepolicies")
    assert run.returncode == 1
    assert f"Error from server (NotFound): {NOT_FOUND}" in run.stderr


def test_kubectl_create_with_an_unknown_field_is_a_strict_decoding_error(emulator):
    run = kubectl(emulator, "create", "-f", "-", stdin=KUSTOMIZATION.replace("  prune: true\n",
                                                                            "  prune: true\n  prun: false\n"))
    assert run.returncode == 1
    assert ('Error from server (BadRequest): error when creating "STDIN": Kustomization in version "v1" cannot '
            'be handled as a Kustomization: strict decoding error: unknown field "spec.prun"') in run.stderr
    assert emulator.store.find(KUSTOMIZATIONS, "flux-system", "apps") is None


def test_a_schema_violation_answers_422_invalid_with_the_field_in_its_causes(emulator):
    run = kubectl(emulator, "create", "-f", "-", stdin=KUSTOMIZATION.replace("  prune: true\n", ""))
    assert run.returncode == 1
    assert 'The Kustomization "apps" is invalid: spec.prune: Required value' in run.stderr

    deployment = json.loads(json.dumps(_yaml(DEPLOYMENT)))
    deployment["spec"]["replicas"] = "two"
    answer = raw(emulator, "POST", "/apis/apps/v1/namespaces/default/deployments", deployment)
    status = answer.json()
    assert (answer.status_code, status["reason"]) == (422, "Invalid")
    assert status["message"] == 'Deployment.apps "web" is invalid: spec.replicas: Invalid value: "two": ' \
                                'must be of type integer'
    assert status["details"]["causes"] == [{"reason": "FieldValueTypeInvalid", "field": "spec.replicas",
                                            "message": 'Invalid value: "two": must be of type integer'}]
    assert emulator.store.find(DEPLOYMENTS, "default", "web") is None


def test_field_validation_warn_drops_unknown_fields_with_a_warning(emulator):
    body = _yaml(KUSTOMIZATION)
    body["spec"]["wiat"] = True
    strict = raw(emulator, "POST", "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations",
                 body, fieldValidation="Strict")
    assert strict.status_code == 400
    # No fieldValidation means Warn (k8s.io/apiserver handlers/rest.go): stored without the field.
    warned = raw(emulator, "POST", "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations",
                 body)
    assert warned.status_code == 201
    assert warned.headers["Warning"] == '299 - "unknown field \\"spec.wiat\\""'
    assert "wiat" not in emulator.store.get(KUSTOMIZATIONS, "flux-system", "apps")["spec"]
    bogus = raw(emulator, "POST", "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations",
                body, fieldValidation="Loose")
    assert bogus.status_code == 400 and "fieldValidation" in bogus.json()["message"]


def test_patches_are_validated_and_kubectl_apply_updates_objects(emulator):
    assert kubectl(emulator, "apply", "-f", "-", stdin=DEPLOYMENT).returncode == 0
    updated = kubectl(emulator, "apply", "-f", "-", stdin=DEPLOYMENT.replace(":v1", ":v2"))
    assert updated.returncode == 0, updated.stderr  # a strategic merge patch, directives and all
    stored = emulator.store.get(DEPLOYMENTS, "default", "web")
    assert stored["spec"]["template"]["spec"]["containers"][0]["image"] == "harbor.lan/homelab/web:v2"
    typo = kubectl(emulator, "apply", "-f", "-", stdin=DEPLOYMENT.replace("  replicas: 1\n", "  replicaz: 1\n"))
    assert typo.returncode == 1
    assert 'strict decoding error: unknown field "spec.replicaz"' in typo.stderr
    patch = raw(emulator, "PATCH", "/apis/apps/v1/namespaces/default/deployments/web",
                {"spec": {"replicas": -1, "paused": "yes"}}, "application/merge-patch+json")
    assert patch.status_code == 422
    assert [c["field"] for c in patch.json()["details"]["causes"]] == ["spec.paused"]


def test_an_object_stored_before_validation_can_still_be_patched_ratcheting(emulator):
    # A Kustomization written straight to the store without `prune` (required): a
    # reconcile request must still go through, as CRD validation ratcheting lets it.
    emulator.store.create(KUSTOMIZATIONS, {"metadata": {"name": "old", "namespace": "flux-system"},
                                           "spec": {"interval": "5m", "sourceRef": {"kind": "GitRepository",
                                                                                    "name": "flux-system"}}})
    api = custom_api(emulator)
    patched = api.patch_namespaced_custom_object(
        "kustomize.toolkit.fluxcd.io", "v1", "flux-system", "kustomizations", "old",
        {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": "now"}}})
    assert patched["metadata"]["annotations"]["reconcile.fluxcd.io/requestedAt"] == "now"
    with pytest.raises(client.ApiException) as refused:
        api.patch_namespaced_custom_object("kustomize.toolkit.fluxcd.io", "v1", "flux-system", "kustomizations",
                                           "old", {"spec": {"interval": 5}})
    assert refused.value.status == 422


def test_served_kinds_that_are_not_stored_list_empty_and_refuse_writes(emulator):
    configmaps = kubectl(emulator, "get", "configmaps", "-A")
    assert configmaps.returncode == 0 and "No resources found" in configmaps.stderr
    crds = kubectl(emulator, "get", "crds", "-o", "name")
    assert "customresourcedefinition.apiextensions.k8s.io/imageupdateautomations.image.toolkit.fluxcd.io" \
        in crds.stdout.split()
    invalid = raw(emulator, "POST", "/api/v1/namespaces/default/configmaps",
                  {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web"}, "dataz": {}},
                  fieldValidation="Strict")
    assert invalid.status_code == 400 and 'unknown field "dataz"' in invalid.json()["message"]
    valid = raw(emulator, "POST", "/api/v1/namespaces/default/configmaps",
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web"}, "data": {"a": "b"}})
    assert valid.status_code == 405


def _yaml(text: str) -> dict:
    import yaml

    return yaml.safe_load(text)
