"""GOC018: the routing manifests route somewhere: a Service without a selector, its EndpointSlices.

Nothing in the cluster fills in the endpoints of a Service without a selector (the endpointslice
controller passes it over), so its EndpointSlices are the whole route. This rule judges what the
API server and kube-proxy would make of them, offline:

- a selectorless Service (not ExternalName) needs an EndpointSlice in its namespace labelled
  kubernetes.io/service-name=<service>, of an address type kube-proxy reads: IPv4 or IPv6
  (kubernetes pkg/proxy/endpointschangetracker.go, supportedEndpointSliceAddressTypes);
- kube-proxy pairs a slice's ports with the Service's by name and protocol
  (pkg/proxy/endpointslicecache.go, endpointInfoByServicePort): a slice port the Service has
  not got carries nothing, a Service port no slice names routes nowhere. An unnamed port
  pairs with an unnamed one; name and protocol default to "" and TCP on both sides;
- every well-formed address must be one the API server accepts (pkg/apis/discovery/validation/
  validation.go, validateEndpoints): not unspecified, loopback, link-local or link-local
  multicast (ValidateNonSpecialIP, pkg/apis/core/validation). Refused means Flux's dry-run
  fails the whole Kustomization, so these are errors. A value that is no IPv4 / IPv6 address
  at all is GOC015's (gitopsctl/kuberouting.py, shared with the emulator, which leaves this
  rule out: its only network is loopback). FQDN is deprecated and kube-proxy ignores it (warning);
- a slice labelled for a Service no file defines is an orphan (warning);
- an ExternalName's spec.externalName, when given (missing is GOC015's), is a DNS-1123
  subdomain, a trailing dot allowed (pkg/apis/core/validation/validation.go, ValidateService).

A namespace is the `namespace:` of a kustomization in the object's own directory (kustomize's
namespace transformer overrides metadata.namespace), else metadata.namespace, else "default".
A Flux Kustomization's targetNamespace, or a kustomization further up, is not followed; the
trees of every cluster in scope meet in one set of namespaces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from gitopsctl.checks import WARNING, Finding
from gitopsctl.checks.apis import patch_files
from gitopsctl.checks.documents import KUSTOMIZATION_NAMES, YamlFile, position
from gitopsctl.errors import Location

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
_ROUTED_TYPES = ("IPv4", "IPv6")
_VALIDATION = "kubernetes pkg/apis/discovery/validation/validation.go"
# staging/src/k8s.io/apimachinery/pkg/util/validation/validation.go, IsDNS1123Subdomain
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS1123_SUBDOMAIN_MAX = 253


@dataclass(frozen=True)
class _Object:
    doc: dict
    file: YamlFile
    namespace: str

    @property
    def name(self) -> str:
        name = _meta(self.doc).get("name")
        return name if isinstance(name, str) else ""

    @property
    def title(self) -> str:
        return f"{self.doc['kind']} {self.namespace}/{self.name}"

    def at(self, node: Any, key: Any, *, of_key: bool = False) -> Location:
        return position(node, key, self.file.display, of_key=of_key)

    def where(self) -> Location:
        meta = _meta(self.doc)
        return self.at(meta, "name") if "name" in meta else self.at(self.doc, "kind", of_key=True)


def routes(checked: Sequence[YamlFile], elsewhere: Iterable[YamlFile],
           kustomization: Callable[[Path], YamlFile | None]) -> Iterator[Finding]:
    """Findings about the Services and EndpointSlices of `checked`; their counterparts are
    looked up in `checked` and `elsewhere` (the other files in scope). `kustomization` loads
    a kustomization file for its namespace."""
    every = {f.path.resolve(): f for f in elsewhere}
    every.update((f.path.resolve(), f) for f in checked)
    mine = {f.path.resolve() for f in checked}
    patches = patch_files(every.values())  # partial objects: a patch need not repeat the ports
    namespaces = _Namespaces(kustomization)
    services, slices = [], []
    for file in every.values():
        if file.is_compose or file.path.name in KUSTOMIZATION_NAMES or file.path.resolve() in patches:
            continue
        for doc in file.k8s_documents():
            if doc.get("apiVersion") == "v1" and doc.get("kind") == "Service":
                services.append(_Object(doc, file, namespaces.of(doc, file)))
            elif doc.get("apiVersion") == "discovery.k8s.io/v1" and doc.get("kind") == "EndpointSlice":
                slices.append(_Object(doc, file, namespaces.of(doc, file)))

    def checked_here(*objects: _Object) -> bool:
        return any(o.file.path.resolve() in mine for o in objects)

    by_service: dict[tuple[str, str], list[_Object]] = {}
    for eps in slices:
        if (target := _labelled_for(eps.doc)) is not None:
            by_service.setdefault((eps.namespace, target), []).append(eps)
    defined = {(s.namespace, s.name) for s in services}

    for svc in services:
        spec = _spec(svc.doc)
        if spec.get("type") == "ExternalName":
            if checked_here(svc):
                yield from _external_name(svc, spec)
            continue
        if spec.get("selector"):
            continue  # the endpointslice controller fills its slices in
        named = by_service.get((svc.namespace, svc.name), [])
        routed = [eps for eps in named if eps.doc.get("addressType") in _ROUTED_TYPES]
        if not routed:
            if checked_here(svc):
                yield _routes_nowhere(svc, named, slices)
            continue
        if checked_here(svc, *routed):
            yield from _port_findings(svc, routed)

    for eps in slices:
        if not checked_here(eps):
            continue
        yield from _address_findings(eps)
        target = _labelled_for(eps.doc)
        if target is not None and (eps.namespace, target) not in defined:
            labels = _meta(eps.doc).get("labels")
            yield Finding("GOC018", eps.at(labels, SERVICE_NAME_LABEL),
                          f"{eps.title} is labelled for Service {eps.namespace}/{target}, which no "
                          "file in scope defines: nothing routes to it",
                          f"define Service {target!r} in namespace {eps.namespace!r} (without a "
                          "selector), fix the label, or delete the slice", severity=WARNING)


# ---------------------------------------------------------------- a Service with nowhere to go

def _routes_nowhere(svc: _Object, named: list[_Object], slices: list[_Object]) -> Finding:
    ports = ", ".join(_shown(key) for key in sorted(_service_ports(svc.doc))) or "its ports"
    hint = (f"add an EndpointSlice (apiVersion: discovery.k8s.io/v1, addressType: IPv4) in "
            f"namespace {svc.namespace!r} labelled {SERVICE_NAME_LABEL}: {svc.name}, with the "
            f"backend's address and ports named like the Service's ({ports}); or give the Service "
            "a selector")
    message = f"Service {svc.namespace}/{svc.name} has no selector and no EndpointSlice names it: " \
              "it routes nowhere"
    if named:
        message += (" (its slices are of addressType "
                    f"{', '.join(sorted({str(e.doc.get('addressType')) for e in named}))}"
                    ", which kube-proxy ignores: pkg/proxy/endpointschangetracker.go)")
    elsewhere = sorted({e.namespace for e in slices
                        if _labelled_for(e.doc) == svc.name and e.namespace != svc.namespace})
    if elsewhere:
        hint += (f"; a slice labelled for it is in namespace {', '.join(elsewhere)}: slices only "
                 "count in the Service's own namespace")
    return Finding("GOC018", svc.where(), message, hint)


def _port_findings(svc: _Object, routed: list[_Object]) -> Iterator[Finding]:
    wanted = _service_ports(svc.doc)
    served: set[tuple[str, str]] = set()
    for eps in routed:
        offered = _slice_ports(eps.doc)
        served |= offered
        extra = offered - wanted
        if extra:
            yield Finding("GOC018", eps.at(eps.doc, "ports", of_key=True),
                          f"{eps.title}: port(s) {_listed(extra)} match no port of Service "
                          f"{svc.namespace}/{svc.name}, which has {_listed(wanted)}; kube-proxy pairs "
                          "ports by name and protocol (pkg/proxy/endpointslicecache.go), so traffic "
                          "never reaches them",
                          "name the slice's ports exactly as the Service's `ports[].name` (an unnamed "
                          "Service port pairs with an unnamed slice port), same protocol")
    missing = wanted - served
    if missing:
        offered_all = _listed(served) if served else "none"
        yield Finding("GOC018", svc.at(_spec(svc.doc), "ports", of_key=True),
                      f"Service {svc.namespace}/{svc.name}: port(s) {_listed(missing)} are named by no "
                      f"EndpointSlice of it (theirs: {offered_all}; the Service's: {_listed(wanted)}): "
                      "connections to them are refused",
                      f"add the port(s) to an EndpointSlice labelled {SERVICE_NAME_LABEL}: {svc.name}, "
                      "named as in the Service, or drop them from the Service")


def _service_ports(doc: dict) -> set[tuple[str, str]]:
    return {_port_key(p) for p in _as_list(_spec(doc).get("ports")) if isinstance(p, dict)}


def _slice_ports(doc: dict) -> set[tuple[str, str]]:
    # kube-proxy skips a slice port without a number (endpointslicecache.go)
    return {_port_key(p) for p in _as_list(doc.get("ports"))
            if isinstance(p, dict) and isinstance(p.get("port"), int) and p.get("port")}


def _port_key(port: dict) -> tuple[str, str]:
    # both default to "" and TCP (pkg/apis/core/v1/defaults.go, pkg/apis/discovery/v1/defaults.go)
    name, protocol = port.get("name"), port.get("protocol")
    return (name if isinstance(name, str) else "", protocol if isinstance(protocol, str) else "TCP")


def _shown(key: tuple[str, str]) -> str:
    name, protocol = key
    text = repr(name) if name else "(unnamed)"
    return text if protocol == "TCP" else f"{text}/{protocol}"


def _listed(keys: set[tuple[str, str]]) -> str:
    return "{" + ", ".join(_shown(k) for k in sorted(keys)) + "}"


# ---------------------------------------------------------------- addresses

def _address_findings(eps: _Object) -> Iterator[Finding]:
    address_type = eps.doc.get("addressType")
    if address_type == "FQDN":
        yield Finding("GOC018", eps.at(eps.doc, "addressType"),
                      f"{eps.title}: addressType FQDN is deprecated and kube-proxy ignores such "
                      "slices (pkg/proxy/endpointschangetracker.go): no traffic reaches them",
                      "use addressType IPv4 with the backend's address, or a Service of type "
                      "ExternalName for a DNS name", severity=WARNING)
        return
    if address_type not in _ROUTED_TYPES:
        return  # GOC015 judges the enum
    for i, endpoint in enumerate(_as_list(eps.doc.get("endpoints"))):
        if not isinstance(endpoint, dict):
            continue
        addresses = _as_list(endpoint.get("addresses"))
        if not addresses:
            yield Finding("GOC018", eps.at(eps.doc["endpoints"], i),
                          f"{eps.title}: endpoints[{i}] has no address; the API server refuses it "
                          f"(must contain at least 1 address, {_VALIDATION})",
                          "give the endpoint the backend's address under `addresses:`")
            continue
        for j, address in enumerate(addresses):
            problem = address_problem(address, address_type)
            if problem is not None:
                yield Finding("GOC018", eps.at(endpoint["addresses"], j),
                              f"{eps.title}: address {address!r} {problem}; the API server refuses "
                              f"it ({_VALIDATION}), and Flux's dry-run fails the whole Kustomization",
                              _address_hint(address_type))


def _address_hint(address_type: str) -> str:
    return (f"write the backend's own {address_type} address as the cluster's nodes reach it (the "
            "VM's LAN address); a loopback or link-local address would name each node itself")


def address_problem(value: Any, address_type: str) -> str | None:
    """Why the API server refuses a well-formed `value` of `address_type`, or None. A value
    that is no address of the type at all is GOC015's (kubeschema, through kuberouting)."""
    from gitopsctl.kuberouting import is_of_type, special_problem

    return special_problem(value) if is_of_type(value, address_type) else None


# ---------------------------------------------------------------- ExternalName

def _external_name(svc: _Object, spec: dict) -> Iterator[Finding]:
    raw = spec.get("externalName")
    where = svc.at(spec, "externalName") if "externalName" in spec else svc.at(spec, "type")
    hint = ("write the DNS name the Service stands for, lower case, e.g. `externalName: backend.lan`; "
            "an IP address belongs in an EndpointSlice of a Service without a selector")
    name = raw.removesuffix(".") if isinstance(raw, str) else ""
    source = "kubernetes pkg/apis/core/validation/validation.go, ValidateService"
    if not name:
        return  # a missing externalName is GOC015's (kuberouting: Required value)
    if len(name) > _DNS1123_SUBDOMAIN_MAX or not _DNS1123_SUBDOMAIN.fullmatch(name):
        yield Finding("GOC018", where, f"Service {svc.namespace}/{svc.name}: externalName {raw!r} is "
                      "not a DNS-1123 subdomain (lower-case letters, digits, '-' and '.', at most "
                      f"{_DNS1123_SUBDOMAIN_MAX} characters); the API server refuses it ({source})",
                      hint)


# ---------------------------------------------------------------- where objects live

class _Namespaces:
    def __init__(self, load: Callable[[Path], YamlFile | None]) -> None:
        self._load = load
        self._by_directory: dict[Path, str | None] = {}

    def of(self, doc: dict, file: YamlFile) -> str:
        directory = file.path.resolve().parent
        if directory not in self._by_directory:
            self._by_directory[directory] = self._kustomize_namespace(directory)
        own = _meta(doc).get("namespace")
        return self._by_directory[directory] or (own if isinstance(own, str) and own else "default")

    def _kustomize_namespace(self, directory: Path) -> str | None:
        for name in KUSTOMIZATION_NAMES:
            path = directory / name
            if path.is_file():
                loaded = self._load(path)
                docs = loaded.documents if loaded is not None else []
                value = docs[0].get("namespace") if docs and isinstance(docs[0], dict) else None
                return value if isinstance(value, str) and value else None
        return None


def _labelled_for(doc: dict) -> str | None:
    labels = _meta(doc).get("labels")
    value = labels.get(SERVICE_NAME_LABEL) if isinstance(labels, dict) else None
    return value if isinstance(value, str) and value else None


def _meta(doc: dict) -> dict:
    meta = doc.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _spec(doc: dict) -> dict:
    spec = doc.get("spec")
    return spec if isinstance(spec, dict) else {}


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else []
