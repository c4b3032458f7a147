"""Services and EndpointSlices: what the API server checks beyond their schemas.

kubernetes/kubernetes pkg/apis/core/validation/validation.go ValidateService and
pkg/apis/discovery/validation/validation.go ValidateEndpointSlice, the rules a homelab's
routing manifests meet (the OpenAPI schemas leave these enums and ranges open). Shared by
the emulator's admission and `gitopsctl check` (GOC015, through kubeschema.validate).

One rule is left out on purpose: ValidateNonSpecialIP (no unspecified, loopback or
link-local endpoint address). `check` applies it as GOC018 (checks/routing.py); the
emulator does not, because the only network of the machine it runs on is loopback: its pod
and cluster IPs are in 127.0.0.0/8 too.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Iterable, Mapping

from gitopsctl.kubeschema import INVALID, NOT_SUPPORTED, REQUIRED, Path, Violation, _quote


def parse_sloppy(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as k8s.io/utils/net ParseIPSloppy reads it (what the API server validates
    with): leading zeros in IPv4 parts are decimal, no zone (`%eth0`) is allowed."""
    if not isinstance(value, str) or "%" in value or not value.isascii():
        return None
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        pass
    parts = value.split(".")
    if len(parts) == 4 and all(p.isdigit() for p in parts) and all(int(p) <= 255 for p in parts):
        return ipaddress.IPv4Address(".".join(str(int(p)) for p in parts))
    return None


def as_family(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address, an IPv4-mapped IPv6 one read as IPv4 (Go's To4() does)."""
    ip = parse_sloppy(value)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_of_type(value: Any, address_type: str) -> bool:
    ip = as_family(value)
    return ip is not None and ip.version == (4 if address_type == "IPv4" else 6)


def special_problem(value: Any) -> str | None:
    """Why ValidateNonSpecialIP (pkg/apis/core/validation) refuses an address, or None."""
    ip = as_family(value)
    if ip is None:
        return None
    if ip.is_unspecified:
        return "may not be unspecified"
    if ip.is_loopback:
        return "may not be in the loopback range (127.0.0.0/8, ::1/128)"
    if ip.is_link_local:
        return "may not be in the link-local range (169.254.0.0/16, fe80::/10)"
    if _link_local_multicast(ip):
        return "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"
    return None


def _link_local_multicast(ip) -> bool:
    # Go's net.IP.IsLinkLocalMulticast: 224.0.0.0/24, or ff?2::/16 (any flags, link-local scope)
    if ip.version == 4:
        return ip in ipaddress.IPv4Network("224.0.0.0/24")
    packed = ip.packed
    return packed[0] == 0xFF and packed[1] & 0x0F == 0x02

# kubernetes/kubernetes pkg/apis/core/validation/validation.go ValidateService and
# pkg/apis/discovery/validation/validation.go ValidateEndpointSlice, the rules a homelab's
# routing manifests meet (the schemas leave these enums and ranges open).

_PROTOCOLS = ("SCTP", "TCP", "UDP")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _one_of(path: Path, value: Any, allowed: tuple[str, ...]) -> Iterable[Violation]:
    if value not in allowed:
        listed = ", ".join(_quote(v) for v in allowed)
        yield Violation(path, f"Unsupported value: {_quote(value)}: supported values: {listed}", NOT_SUPPORTED)


def _port_number(path: Path, value: Any) -> Iterable[Violation]:
    if isinstance(value, int) and not 1 <= value <= 65535:
        yield Violation(path, f"Invalid value: {value}: must be between 1 and 65535, inclusive", INVALID)


def _service_rules(obj: Mapping[str, Any]) -> Iterable[Violation]:
    if not isinstance(obj.get("spec"), Mapping):
        yield Violation(("spec",), "Required value", REQUIRED)  # the server: spec.ports is required
        return
    spec = obj["spec"]
    kind = spec.get("type") or "ClusterIP"
    yield from _one_of(("spec", "type"), kind, ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort"))
    if "sessionAffinity" in spec:
        yield from _one_of(("spec", "sessionAffinity"), spec["sessionAffinity"], ("ClientIP", "None"))
    ports = [p for p in spec.get("ports") or [] if isinstance(p, Mapping)]
    if kind == "ExternalName" and not spec.get("externalName"):
        yield Violation(("spec", "externalName"), "Required value", REQUIRED)
    if not ports and kind != "ExternalName" and spec.get("clusterIP") != "None":
        yield Violation(("spec", "ports"), "Required value", REQUIRED)
    cluster_ip = spec.get("clusterIP")
    if cluster_ip not in (None, "", "None") and parse_sloppy(cluster_ip) is None:
        yield Violation(("spec", "clusterIPs", 0), f"Invalid value: {_quote(cluster_ip)}: must be a valid IP "
                                                   "address, (e.g. 10.9.8.7 or 2001:db8::ffff)", INVALID)
    names: set[str] = set()
    for i, port in enumerate(ports):
        where = ("spec", "ports", i)
        name = port.get("name") or ""
        if len(ports) > 1 and not name:
            yield Violation(where + ("name",), "Required value", REQUIRED)
        elif name and not _DNS_LABEL.match(str(name)):
            yield Violation(where + ("name",), f"Invalid value: {_quote(name)}: a lowercase RFC 1123 label must "
                                               "consist of lower case alphanumeric characters or '-'", INVALID)
        elif name in names:
            yield Violation(where + ("name",), f"Duplicate value: {_quote(name)}", INVALID)
        names.add(name)
        yield from _port_number(where + ("port",), port.get("port"))
        if "protocol" in port:
            yield from _one_of(where + ("protocol",), port["protocol"], _PROTOCOLS)
        if isinstance(port.get("targetPort"), int) and port["targetPort"] != 0:
            yield from _port_number(where + ("targetPort",), port["targetPort"])


def _endpoint_slice_rules(obj: Mapping[str, Any]) -> Iterable[Violation]:
    address_type = obj.get("addressType")
    yield from _one_of(("addressType",), address_type, ("FQDN", "IPv4", "IPv6"))
    for i, endpoint in enumerate(obj.get("endpoints") or []):
        addresses = (endpoint.get("addresses") if isinstance(endpoint, Mapping) else None) or []
        if not addresses:
            yield Violation(("endpoints", i, "addresses"), "Required value: must contain at least 1 address",
                            REQUIRED)
        for j, address in enumerate(addresses):
            if address_type in ("IPv4", "IPv6") and not is_of_type(address, address_type):
                yield Violation(("endpoints", i, "addresses", j),
                                f"Invalid value: {_quote(address)}: must be a valid {address_type} address",
                                INVALID)
    names: set[str] = set()
    for i, port in enumerate(obj.get("ports") or []):
        if not isinstance(port, Mapping):
            continue
        name = port.get("name") or ""
        if name and not _DNS_LABEL.match(str(name)):
            yield Violation(("ports", i, "name"), f"Invalid value: {_quote(name)}: a lowercase RFC 1123 label "
                                                  "must consist of lower case alphanumeric characters or '-'",
                            INVALID)
        elif name in names:
            yield Violation(("ports", i, "name"), f"Duplicate value: {_quote(name)}", INVALID)
        names.add(name)
        if "protocol" in port:
            yield from _one_of(("ports", i, "protocol"), port["protocol"], _PROTOCOLS)
        if isinstance(port.get("port"), int) and not 0 <= port["port"] <= 65535:
            yield Violation(("ports", i, "port"), f"Invalid value: {port['port']}: must be between 0 and 65535, "
                                                  "inclusive", INVALID)


ROUTING_RULES = {("v1", "Service"): _service_rules, ("discovery.k8s.io/v1", "EndpointSlice"): _endpoint_slice_rules}
