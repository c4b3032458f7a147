"""GOC018 route-broken through `gitopsctl check`: a Service without a selector and its
EndpointSlices, judged as the API server and kube-proxy would judge them.

Each test builds a real git repository; most have no gitopsctl.yaml, so the scope is every YAML
file git sees. The homelab tests copy this repository's clusters/ and gitopsctl.yaml.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gitopsctl.checks import RULES, runner
from gitopsctl.checks.routing import address_problem
from gitopsctl.kuberouting import is_of_type
from gitopsctl.sandbox.lab.gitremote import git

REPO_ROOT = Path(__file__).resolve().parents[2]

SERVICE = """\
    apiVersion: v1
    kind: Service
    metadata:
      name: backend
      namespace: default
    spec:
      ports:
        - name: http
          port: 80
          targetPort: 8081
    """

SLICE = """\
    apiVersion: discovery.k8s.io/v1
    kind: EndpointSlice
    metadata:
      name: backend-vm
      namespace: default
      labels:
        kubernetes.io/service-name: backend
    addressType: IPv4
    ports:
      - name: http
        port: 8081
        protocol: TCP
    endpoints:
      - addresses:
          - 192.168.1.50
    """


def run_check(root: Path, *paths: str) -> tuple[int, list[dict]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITOPSCTL_")}
    proc = subprocess.run([sys.executable, "-m", "gitopsctl", "--no-color", "-o", "json", "check",
                           *paths], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return proc.returncode, json.loads(proc.stdout)["findings"]


def routing(found: list[dict]) -> list[tuple[str, str, str]]:
    """(severity, file:line, message) of the GOC018 findings. Every manifest here is otherwise
    valid: another rule's finding fails the test, unless it is GOC015 (the schema, which checks
    some of the same fields) on a line GOC018 names too."""
    mine = [f for f in found if f["rule"] == "GOC018"]
    lines = {(f["file"], f["line"]) for f in mine}
    others = [f for f in found if f["rule"] != "GOC018" and
              not (f["rule"] == "GOC015" and (f["file"], f["line"]) in lines)]
    assert not others, others
    return [(f["severity"], f"{f['file']}:{f['line']}", f["message"]) for f in mine]


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


@pytest.fixture
def repo(tmp_path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    return tmp_path


def test_rule_is_registered():
    assert RULES["GOC018"] == "route-broken"
    assert "GOC018 route-broken" in (REPO_ROOT / "gitopsctl/checks/__init__.py").read_text()
    assert "| GOC018 | route-broken |" in (REPO_ROOT / "docs/bump-and-check.md").read_text()


def test_service_with_a_matching_slice_passes(repo):
    write(repo, "routing/service.yaml", SERVICE)
    write(repo, "routing/endpointslice.yaml", SLICE)
    code, found = run_check(repo)
    assert (code, found) == (0, [])


def test_selectorless_service_without_slice_routes_nowhere(repo):
    write(repo, "routing/service.yaml", SERVICE)
    code, found = run_check(repo)
    assert code == 1
    assert routing(found) == [("error", "routing/service.yaml:4", "Service default/backend has no "
                               "selector and no EndpointSlice names it: it routes nowhere")]
    assert "kubernetes.io/service-name: backend" in found[0]["hint"]
    assert "'http'" in found[0]["hint"]


def test_a_slice_in_another_namespace_does_not_count(repo):
    write(repo, "routing/service.yaml", SERVICE)
    write(repo, "routing/endpointslice.yaml", SLICE.replace("namespace: default", "namespace: other"))
    code, found = run_check(repo)
    assert code == 1
    kinds = sorted((sev, where) for sev, where, _ in routing(found))
    assert kinds == [("error", "routing/service.yaml:4"), ("warning", "routing/endpointslice.yaml:7")]
    nowhere = next(f for f in found if f["severity"] == "error")
    assert "namespace other" in nowhere["hint"]


def test_selector_services_and_headless_selectorless_are_judged_alike(repo):
    write(repo, "app/service.yaml", """\
        apiVersion: v1
        kind: Service
        metadata: {name: web}
        spec:
          selector: {app: web}
          ports: [{name: http, port: 80}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: db}
        spec:
          clusterIP: None
          ports: [{port: 5432}]
        """)
    code, found = run_check(repo)
    assert code == 1
    assert [(s, w) for s, w, _ in routing(found)] == [("error", "app/service.yaml:10")]
    assert "Service default/db " in found[0]["message"]


def test_port_names_must_pair(repo):
    write(repo, "routing/service.yaml", SERVICE)
    write(repo, "routing/endpointslice.yaml", SLICE.replace("- name: http", "- name: web"))
    code, found = run_check(repo)
    assert code == 1
    by_file = {where: message for _, where, message in routing(found)}
    assert set(by_file) == {"routing/endpointslice.yaml:9", "routing/service.yaml:7"}
    assert "port(s) {'web'} match no port of Service default/backend, which has {'http'}" in \
        by_file["routing/endpointslice.yaml:9"]
    assert "port(s) {'http'} are named by no EndpointSlice of it (theirs: {'web'}" in \
        by_file["routing/service.yaml:7"]


def test_unnamed_ports_pair_and_protocol_counts(repo):
    write(repo, "routing/service.yaml", """\
        apiVersion: v1
        kind: Service
        metadata: {name: dns}
        spec:
          ports: [{port: 53, protocol: UDP}]
        """)
    write(repo, "routing/endpointslice.yaml", """\
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata:
          name: dns-1
          labels: {kubernetes.io/service-name: dns}
        addressType: IPv4
        ports: [{port: 53, protocol: UDP}]
        endpoints: [{addresses: [192.168.1.1]}]
        """)
    assert run_check(repo) == (0, [])
    write(repo, "routing/endpointslice.yaml",
          (repo / "routing/endpointslice.yaml").read_text().replace("protocol: UDP", "protocol: TCP"))
    code, found = run_check(repo)
    assert code == 1
    messages = " ".join(m for _, _, m in routing(found))
    assert "{(unnamed)}" in messages and "{(unnamed)/UDP}" in messages


@pytest.mark.parametrize("address, problem", [
    ("127.0.0.1", "may not be in the loopback range"),
    ("169.254.169.254", "may not be in the link-local range"),
    ("0.0.0.0", "may not be unspecified"),
    ("224.0.0.251", "may not be in the link-local multicast range"),
])
def test_addresses_the_api_server_refuses(repo, address, problem):
    write(repo, "routing/service.yaml", SERVICE)
    write(repo, "routing/endpointslice.yaml", SLICE.replace("192.168.1.50", f'"{address}"'))
    code, found = run_check(repo)
    assert code == 1
    [(severity, where, message)] = routing(found)
    assert (severity, where) == ("error", "routing/endpointslice.yaml:15")
    assert f"address {address!r} {problem}" in message
    assert "pkg/apis/discovery/validation" in message


@pytest.mark.parametrize("address", ["2001:db8::1", "192.168.1.300", "backend.lan"])
def test_a_value_that_is_no_address_of_the_type_is_the_schemas_finding(repo, address):
    """GOC015 (kuberouting, as the API server's ValidateEndpointSlice) says it once; GOC018
    judges only well-formed addresses."""
    write(repo, "routing/service.yaml", SERVICE)
    write(repo, "routing/endpointslice.yaml", SLICE.replace("192.168.1.50", f'"{address}"'))
    code, found = run_check(repo)
    assert code == 1
    assert [f["rule"] for f in found] == ["GOC015"]
    assert "must be a valid IPv4 address" in found[0]["message"] and address in found[0]["message"]


def test_address_parsing_follows_the_api_server():
    # ParseIPSloppy reads leading zeros as decimal; To4() takes IPv4-mapped IPv6 for IPv4
    assert address_problem("192.168.001.050", "IPv4") is None
    assert address_problem("::ffff:192.168.1.50", "IPv4") is None
    assert not is_of_type("::ffff:192.168.1.50", "IPv6") and address_problem("::ffff:192.168.1.50", "IPv6") is None
    assert address_problem("::ffff:127.0.0.1", "IPv4").startswith("may not be in the loopback")
    assert address_problem("2001:db8::1", "IPv6") is None
    assert address_problem("::1", "IPv6").startswith("may not be in the loopback")
    assert address_problem("fe80::1", "IPv6").startswith("may not be in the link-local range")
    assert address_problem("ff32::1", "IPv6").startswith("may not be in the link-local multicast")
    assert not is_of_type("fe80::1%eth0", "IPv6") and not is_of_type(3232235826, "IPv4")
    assert is_of_type("192.168.001.050", "IPv4") and is_of_type("::ffff:192.168.1.50", "IPv4")


def test_fqdn_slices_are_ignored_by_kube_proxy(repo):
    write(repo, "routing/service.yaml", SERVICE)
    write(repo, "routing/endpointslice.yaml",
          SLICE.replace("addressType: IPv4", "addressType: FQDN").replace("192.168.1.50", "backend.lan"))
    code, found = run_check(repo)
    assert code == 1
    got = sorted((s, w) for s, w, _ in routing(found))
    assert got == [("error", "routing/service.yaml:4"), ("warning", "routing/endpointslice.yaml:8")]
    assert any("addressType FQDN, which kube-proxy ignores" in m for _, _, m in routing(found))


def test_orphan_slice_is_a_warning(repo):
    write(repo, "routing/endpointslice.yaml", SLICE)
    code, found = run_check(repo)
    assert code == 0
    assert routing(found) == [("warning", "routing/endpointslice.yaml:7",
                               "EndpointSlice default/backend-vm is labelled for Service "
                               "default/backend, which no file in scope defines: nothing routes to it")]


def test_kustomization_namespace_places_the_objects(repo):
    write(repo, "routing/kustomization.yaml", """\
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        namespace: backend
        resources: [service.yaml]
        """)
    write(repo, "routing/service.yaml", SERVICE)
    write(repo, "slices/endpointslice.yaml", SLICE.replace("namespace: default", "namespace: backend"))
    assert run_check(repo) == (0, [])
    write(repo, "slices/endpointslice.yaml", SLICE)
    code, found = run_check(repo)
    assert code == 1
    assert any(m.startswith("Service backend/backend has no selector") for _, _, m in routing(found))


def test_a_patch_is_no_service_of_its_own(repo):
    write(repo, "routing/kustomization.yaml", """\
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        resources: [service.yaml, endpointslice.yaml]
        patches: [{path: label.yaml}]
        """)
    write(repo, "routing/service.yaml", SERVICE)
    write(repo, "routing/endpointslice.yaml", SLICE)
    write(repo, "routing/label.yaml", """\
        apiVersion: v1
        kind: Service
        metadata: {name: backend, namespace: default, labels: {tier: edge}}
        """)
    assert run_check(repo) == (0, [])


@pytest.mark.parametrize("external, ok", [
    ("backend.lan", True), ("backend.lan.", True), ("a-b.c0.example", True),
    ("Backend.lan", False), ("back_end.lan", False), ("-backend.lan", False),
    ("192.168.1.50:80", False),
])
def test_external_name_must_be_a_dns_subdomain(repo, external, ok):
    write(repo, "routing/service.yaml", f"""\
        apiVersion: v1
        kind: Service
        metadata: {{name: backend}}
        spec:
          type: ExternalName
          externalName: "{external}"
        """)
    code, found = run_check(repo)
    if ok:
        assert (code, found) == (0, [])
    else:
        assert code == 1
        [(severity, where, message)] = routing(found)
        assert (severity, where) == ("error", "routing/service.yaml:6")
        assert "ValidateService" in message


def test_an_external_name_service_without_a_name_is_the_schemas_finding(repo):
    write(repo, "routing/service.yaml", """\
        apiVersion: v1
        kind: Service
        metadata: {name: backend}
        spec:
          type: ExternalName
          externalName: ""
        """)
    code, found = run_check(repo)
    assert code == 1 and [f["rule"] for f in found] == ["GOC015"]
    assert "externalName" in found[0]["message"] and "Required value" in found[0]["message"]


def test_a_staged_service_is_judged_with_the_committed_slice(repo):
    """pre-commit passes only the changed file: the slice elsewhere in scope still counts."""
    write(repo, "routing/service.yaml", SERVICE)
    write(repo, "routing/endpointslice.yaml", SLICE)
    assert run_check(repo, "routing/service.yaml") == (0, [])
    write(repo, "routing/service.yaml", SERVICE.replace("name: http", "name: web"))
    code, found = run_check(repo, "routing/service.yaml")
    assert code == 1
    assert {w for _, w, _ in routing(found)} == {"routing/service.yaml:7",
                                                  "routing/endpointslice.yaml:9"}


@pytest.fixture
def homelab(tmp_path) -> Path:
    shutil.copytree(REPO_ROOT / "clusters", tmp_path / "clusters")
    shutil.copy(REPO_ROOT / "gitopsctl.yaml", tmp_path / "gitopsctl.yaml")
    git(tmp_path, "init", "-q", "-b", "main")
    return tmp_path


def test_homelab_with_the_routing_manifests_is_clean(homelab):
    """The layout the repository's clusters/homelab/routing/backend holds; with gitopsctl.yaml the
    scope is the Flux Kustomizations' trees, which include it."""
    write(homelab, "clusters/homelab/routing/backend/service.yaml", SERVICE)
    write(homelab, "clusters/homelab/routing/backend/endpointslice.yaml", SLICE)
    assert runner.run(homelab, [], homelab / "gitopsctl.yaml", environ={}).findings == []
    write(homelab, "clusters/homelab/routing/backend/endpointslice.yaml",
          SLICE.replace("192.168.1.50", "127.0.0.1"))
    report = runner.run(homelab, [], homelab / "gitopsctl.yaml", environ={})
    assert [(f.rule, str(f.location)) for f in report.findings if f.rule == "GOC018"] == [
        ("GOC018", "clusters/homelab/routing/backend/endpointslice.yaml:15:9")]


_port_name = st.one_of(st.just(""), st.from_regex(r"[a-z]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True))


def _manifests(service_names: list[str], slice_names: list[str]) -> tuple[str, str]:
    service = ["apiVersion: v1", "kind: Service", "metadata: {name: backend}", "spec:", "  ports:"]
    service += [f"    - {{name: {json.dumps(n)}, port: {80 + i}}}" for i, n in enumerate(service_names)]
    eps = ["apiVersion: discovery.k8s.io/v1", "kind: EndpointSlice",
           "metadata: {name: backend-vm, labels: {kubernetes.io/service-name: backend}}",
           "addressType: IPv4", "endpoints: [{addresses: [192.168.1.50]}]", "ports:"]
    eps += [f"  - {{name: {json.dumps(n)}, port: {8080 + i}, protocol: TCP}}"
            for i, n in enumerate(slice_names)]
    return "\n".join(service) + "\n", "\n".join(eps) + "\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(service_names=st.one_of(st.tuples(_port_name).map(list),
                               st.lists(_port_name.filter(bool), min_size=2, max_size=4, unique=True)),
       extra=st.lists(_port_name, max_size=2, unique=True), drop=st.integers(0, 4),
       shuffle=st.randoms(use_true_random=False))
def test_port_names_pair_exactly_when_no_finding(service_names, extra, drop, shuffle):
    """One slice for one Service: no GOC018 finding <=> the two sets of port names are equal.
    A Service port may go unnamed only when it is the only one (ValidateService)."""
    slice_names = [n for i, n in enumerate(service_names) if i != drop] + \
        [n for n in extra if n not in service_names]
    shuffle.shuffle(slice_names)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        git(root, "init", "-q", "-b", "main")
        service, eps = _manifests(service_names, slice_names)
        (root / "service.yaml").write_text(service)
        (root / "endpointslice.yaml").write_text(eps)
        found = runner.run(root, [], None, environ={}).findings
    assert [f for f in found if f.rule != "GOC018"] == []
    assert (found == []) == (set(service_names) == set(slice_names)), [f.message for f in found]


_scalar = st.one_of(st.none(), st.booleans(), st.integers(-2, 70000), st.sampled_from(
    ["", "http", "backend", "IPv4", "IPv6", "FQDN", "ExternalName", "TCP", "127.0.0.1", "::1",
     "192.168.1.50", "Backend.lan", "backend.lan."]))
_value = st.recursive(_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.sampled_from(["name", "port", "protocol", "addresses", "endpoints", "ports",
                                     "selector", "type", "externalName", "addressType", "labels",
                                     "kubernetes.io/service-name", "namespace"]), inner, max_size=4)),
    max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from([("v1", "Service"), ("discovery.k8s.io/v1", "EndpointSlice")]),
       body=st.dictionaries(st.sampled_from(["metadata", "spec", "ports", "endpoints", "addressType"]),
                            _value, max_size=4))
def test_any_body_gives_findings_never_a_crash(tmp_path_factory, kind, body):
    from gitopsctl.checks import routing as rule
    from gitopsctl.checks.documents import load

    path = Path(tmp_path_factory.mktemp("body")) / "m.yaml"
    path.write_text(json.dumps({"apiVersion": kind[0], "kind": kind[1], **body}))
    file, errors = load(path, "m.yaml")
    assert not errors
    for finding in rule.routes([file], [], lambda p: None):
        assert finding.rule == "GOC018" and finding.location.line and finding.hint
