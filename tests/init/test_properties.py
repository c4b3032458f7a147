"""Whatever names a homelab uses, init proposes one service per policy and a config that loads."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from gitopsctl import config
from gitopsctl.init import plan

# what Flux accepts in a marker (setters._parse_marker_comment) and compose in a service name
_label = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?\Z")
policy_name = st.from_regex(r"\A[a-z0-9]([-.a-z0-9]{0,10}[a-z0-9])?\Z").filter(
    lambda n: ".." not in n and ".-" not in n and "-." not in n)
compose_name = st.from_regex(r"\A[a-zA-Z0-9][a-zA-Z0-9_.-]{0,10}\Z")
image_path = st.lists(_label, min_size=1, max_size=3).map("/".join)
directory = st.lists(st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,8}\Z").filter(
    lambda d: d not in (".", "..") and not d.startswith(".")), min_size=0, max_size=2).map("/".join)

stack = st.dictionaries(compose_name, st.tuples(_label, policy_name, image_path),
                        min_size=1, max_size=4)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stack=stack, where=directory, host=st.sampled_from(["registry.lan", "10.0.0.5:5000",
                                                            "Harbor.Home.lan"]))
def test_any_compose_stack_gives_a_loadable_config_with_a_service_per_policy(stack, where, host):
    lines = ["services:"]
    policies = set()
    for name, (namespace, policy, path) in stack.items():
        policies.add(f"{namespace}:{policy}")
        lines += [f"  {json.dumps(name)}:",
                  f'    image: {host}/{path}:1.0 # {{"$imagepolicy": "{namespace}:{policy}"}}']
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        compose = root / where / "docker-compose.yml"
        compose.parent.mkdir(parents=True, exist_ok=True)
        compose.write_text("\n".join(lines) + "\n")
        result = plan(root)
        (root / "gitopsctl.yaml").write_text(result.text)
        loaded = config.load(root / "gitopsctl.yaml", root=root, environ={})
    assert {s.policy for s in loaded.services.values()} == policies
    assert len(loaded.services) == len(policies)
    (vm,) = loaded.targets.values()
    assert vm.kind == "vm" and vm.compose_file == (f"{where}/" if where else "") + "docker-compose.yml"
    owned = sorted(c for s in loaded.services.values() for c in s.compose_services)
    assert owned == sorted(stack)


_kind = st.sampled_from(["Deployment", "StatefulSet", "DaemonSet"])
workloads = st.dictionaries(_label, st.tuples(_kind, st.one_of(st.none(), _label), policy_name),
                            min_size=1, max_size=4)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads=workloads)
def test_any_workloads_a_flux_kustomization_applies_are_followed_in_their_namespace(workloads):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "clusters").mkdir()
        (root / "clusters" / "apps.yaml").write_text(
            "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\n"
            "metadata:\n  name: apps\n  namespace: flux-system\n"
            "spec:\n  interval: 5m\n  path: ./apps\n  prune: true\n"
            "  sourceRef:\n    kind: GitRepository\n    name: flux-system\n")
        for name, (kind, namespace, policy) in workloads.items():
            meta = f"  name: {json.dumps(name)}\n" + (f"  namespace: {json.dumps(namespace)}\n" if namespace else "")
            folder = root / "apps" / name
            folder.mkdir(parents=True)
            (folder / "workload.yaml").write_text(
                f"apiVersion: apps/v1\nkind: {kind}\nmetadata:\n{meta}spec:\n  template:\n"
                "    spec:\n      containers:\n        - name: app\n"
                f'          image: registry.lan/home/{name}:1.0 # {{"$imagepolicy": "flux-system:{policy}"}}\n')
        result = plan(root)
        (root / "gitopsctl.yaml").write_text(result.text)
        loaded = config.load(root / "gitopsctl.yaml", root=root, environ={})
    assert list(loaded.targets) == ["apps"] and loaded.targets["apps"].kind == "kubernetes"
    assert [k.name for k in loaded.targets["apps"].kustomizations] == ["apps"]
    followed = {(w.kind, w.name, w.namespace) for s in loaded.services.values() for w in s.workloads}
    assert followed == {(kind, name, namespace or "default")
                        for name, (kind, namespace, _) in workloads.items()}
    assert {s.policy for s in loaded.services.values()} == \
        {f"flux-system:{p}" for _, _, p in workloads.values()}


_word = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=6)
_json = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-5, 5), _word),
                     lambda inner: st.one_of(st.lists(inner, max_size=3),
                                             st.dictionaries(_word, inner, max_size=3)),
                     max_leaves=12)
_kinds = st.sampled_from([
    ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"), ("source.toolkit.fluxcd.io/v1", "GitRepository"),
    ("image.toolkit.fluxcd.io/v1", "ImagePolicy"), ("image.toolkit.fluxcd.io/v1", "ImageRepository"),
    ("image.toolkit.fluxcd.io/v1", "ImageUpdateAutomation"), ("apps/v1", "Deployment"),
    ("bitnami.com/v1alpha1", "SealedSecret")])
_fields = st.sampled_from(["path", "sourceRef", "dependsOn", "ref", "policy", "filterTags", "image",
                           "update", "suspend", "template", "imageRepositoryRef", "targetNamespace"])
_object = st.tuples(_kinds, st.one_of(_json, _word),
                    st.dictionaries(_fields, _json, max_size=4))
_kustomize = st.dictionaries(st.sampled_from(["resources", "patches", "images", "namespace",
                                              "components", "patchesJson6902"]), _json, max_size=4)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(objects=st.lists(_object, max_size=5), kustomize=_kustomize,
       service=st.dictionaries(st.sampled_from(["env_file", "healthcheck", "build"]), _json,
                               max_size=3))
def test_malformed_objects_are_passed_over_never_a_crash(objects, kustomize, service):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        docs = [{"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": "x"},
                 "spec": spec} for (api, kind), name, spec in objects]
        (root / "objects.yaml").write_text("\n---\n".join(json.dumps(d) for d in docs) + "\n")
        (root / "k").mkdir()
        (root / "k" / "kustomization.yaml").write_text(json.dumps(kustomize) + "\n")
        body = "\n".join(f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in service.items())
        (root / "compose.yaml").write_text(
            'services:\n  app:\n    image: registry.lan/home/app:1 # {"$imagepolicy": "flux-system:app"}\n'
            + (body + "\n" if body else ""))
        result = plan(root)
    assert "app" in result.proposal.document["services"]
