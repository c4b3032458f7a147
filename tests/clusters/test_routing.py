"""The route from the cluster to the backend on the VM, as Flux applies it from clusters/homelab."""

from __future__ import annotations

import ipaddress

from ruamel.yaml import YAML

from tests.clusters.conftest import (HOMELAB, REPO_ROOT, built, by_kind, flux_applied_objects,
                                     flux_kustomizations)

ROUTING_PATH = "./clusters/homelab/routing/backend"
# The names the EndpointSlice and mirroring controllers write into managed-by: a slice that
# carries one of them is theirs to rewrite or delete (kubernetes/endpointslice reconciler.go).
CONTROLLERS = {"endpointslice-controller.k8s.io", "endpointslicemirroring-controller.k8s.io"}


def _route() -> tuple[dict, list[dict]]:
    objects = flux_applied_objects()
    service = by_kind(objects, "Service")[("default", "backend")]
    slices = [o for o in objects if o["kind"] == "EndpointSlice"
              and o["metadata"].get("labels", {}).get("kubernetes.io/service-name") == "backend"]
    return service, slices


def test_routing_is_a_flux_kustomization_the_root_applies():
    root = YAML(typ="safe").load((HOMELAB / "kustomization.yaml").read_text())
    assert "routing.yaml" in root["resources"]
    spec = flux_kustomizations()[("flux-system", "routing")]["spec"]
    assert spec["path"] == ROUTING_PATH
    assert spec["prune"] is True  # a route deleted from git is deleted from the cluster
    assert spec["sourceRef"] == {"kind": "GitRepository", "name": "flux-system"}
    # nothing in it has a status to wait for, and it depends on no other layer
    assert spec["wait"] is False and "dependsOn" not in spec
    kinds = {(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"])
             for o in built((REPO_ROOT / ROUTING_PATH).resolve())}
    assert kinds == {("Service", "default", "backend"), ("EndpointSlice", "default", "backend-vm")}


def test_backend_service_has_no_selector_and_one_named_port():
    service, _ = _route()
    spec = service["spec"]
    assert "selector" not in spec  # no controller may fill in (or empty) its endpoints
    assert spec.get("type", "ClusterIP") == "ClusterIP"  # a cluster IP, hence BACKEND_SERVICE_*
    assert spec["ports"] == [{"name": "http", "protocol": "TCP", "port": 80}]


def test_the_slice_names_the_service_and_routes_its_port_to_the_vm():
    service, slices = _route()
    (eps,) = slices
    assert eps["metadata"]["name"] == "backend-vm"
    assert eps["metadata"]["namespace"] == service["metadata"]["namespace"]
    assert eps["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] not in CONTROLLERS
    assert eps["addressType"] == "IPv4"
    # kube-proxy pairs slice ports with Service ports by name and protocol
    assert {(p["name"], p["protocol"]) for p in eps["ports"]} == \
        {(p["name"], p["protocol"]) for p in service["spec"]["ports"]}
    assert [p["port"] for p in eps["ports"]] == [80]  # the VM's reverse proxy
    (endpoint,) = eps["endpoints"]
    assert endpoint["conditions"] == {"ready": True}
    (address,) = endpoint["addresses"]
    ip = ipaddress.IPv4Address(address)
    assert ip.is_private and not ip.is_loopback and not ip.is_link_local


def test_apps_starts_the_frontend_only_after_the_route_exists():
    kustomizations = flux_kustomizations()
    assert kustomizations[("flux-system", "apps")]["spec"]["dependsOn"] == [{"name": "routing"}]


def test_address_lines_stay_simple_for_the_sandbox_to_rewrite():
    """The sandbox rewrites the address and port to its own backend (seed.py); it matches
    these exact lines, and the set-up guide names the same example address."""
    text = (HOMELAB / "routing/backend/endpointslice.yaml").read_text()
    lines = [line.strip() for line in text.splitlines()]
    assert '- addresses: ["192.168.1.50"]' in lines
    assert lines.count("port: 80") == 1
    assert "192.168.1.50" in (REPO_ROOT / "docs/homelab-setup.md").read_text()


def test_gitopsctl_asks_the_frontend_through_this_route(homelab_config):
    """The config's consistency pair is the question the frontend answers through the route:
    /api/version on the frontend's NodePort, where its own health check already goes."""
    from urllib.parse import urlsplit

    (pair,) = homelab_config.consistency
    assert (pair.caller, pair.callee) == ("frontend", "backend")
    url = urlsplit(pair.url)
    assert url.path == "/api/version"
    frontend = by_kind(built(HOMELAB / "apps/frontend"), "Service")[("default", "frontend")]
    assert url.port == frontend["spec"]["ports"][0]["nodePort"]
    health_hosts = {urlsplit(h.http).hostname for h in homelab_config.service("frontend").health
                    if getattr(h, "http", None)}
    assert url.hostname in health_hosts
