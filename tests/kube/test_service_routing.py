"""Services and EndpointSlices on the emulator: stored and allocated as the API server does,
kept by the EndpointSlice controller, routed by kube-proxy from the slices alone, and handed to
containers as the kubelet's service environment variables. Judged with the real kubernetes
client, the real kubectl and real TCP connections to the cluster IPs.
"""

from __future__ import annotations

import json
import re
import ssl
import textwrap
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gitopsctl.sandbox.lab.kube.store import ENDPOINT_SLICES, GIT_REPOSITORIES, KUSTOMIZATIONS, SERVICES
from tests.kube.test_workload_kinds import apply, kubectl, wait_for

NS = "default"


def core_api(kube):
    from kubernetes import client, config

    return client.CoreV1Api(config.new_client_from_config(str(kube.kubeconfig)))


def discovery_api(kube):
    from kubernetes import client, config

    return client.DiscoveryV1Api(config.new_client_from_config(str(kube.kubeconfig)))


class Backend:
    """An HTTP server outside the cluster (a process on 127.0.0.1) answering its own name."""

    def __init__(self, name: str):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                body = f"{name} {self.path}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def backends():
    made = [Backend("a"), Backend("b")]
    yield made
    for backend in made:
        backend.close()


def get(url: str) -> str | None:
    """The body, or None when the connection is refused, reset or closed without an answer."""
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:
            return answer.read().decode()
    except (urllib.error.URLError, ConnectionError, OSError):
        return None


def selectorless(port: int, *, port_name: str = "http") -> str:
    """The routing the homelab commits: a Service without selector and the slice of its VM."""
    return textwrap.dedent(f"""\
        apiVersion: v1
        kind: Service
        metadata:
          name: backend
        spec:
          ports:
            - name: http
              port: 80
        ---
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata:
          name: backend-vm
          labels:
            kubernetes.io/service-name: backend
        addressType: IPv4
        endpoints:
          - addresses: ["127.0.0.1"]
        ports:
          - name: {port_name}
            port: {port}
            protocol: TCP
        """)


def test_a_selectorless_service_routes_to_the_slice_it_is_given(kube, backends):
    a, b = backends
    apply(kube, selectorless(a.port))
    ip = wait_for(lambda: kube.service_address("backend"), 5, "a cluster IP")
    assert wait_for(lambda: get(f"http://{ip}/version"), 5, "the backend through the cluster IP") == "a /version"

    # The slice is the user's: the EndpointSlice controller leaves it as written.
    time.sleep(0.5)
    slice_ = discovery_api(kube).read_namespaced_endpoint_slice("backend-vm", NS)
    assert [e.addresses for e in slice_.endpoints] == [["127.0.0.1"]]
    assert "endpointslice.kubernetes.io/managed-by" not in (slice_.metadata.labels or {})

    discovery_api(kube).patch_namespaced_endpoint_slice("backend-vm", NS, {"ports": [
        {"name": "http", "port": b.port, "protocol": "TCP"}]})
    assert wait_for(lambda: get(f"http://{ip}/") == "b /", 5, "the new slice port to take over")

    # A slice port named otherwise is no endpoint of port "http": refused at once.
    discovery_api(kube).patch_namespaced_endpoint_slice("backend-vm", NS, {"ports": [
        {"name": "web", "port": b.port, "protocol": "TCP"}]})
    wait_for(lambda: get(f"http://{ip}/") is None, 5, "no endpoint for port http")
    started = time.monotonic()
    assert get(f"http://{ip}/") is None and time.monotonic() - started < 1.0

    core_api(kube).delete_namespaced_service("backend", NS)
    wait_for(lambda: kube.service_address("backend") is None, 5, "the Service gone")


def test_a_service_with_a_selector_gets_a_managed_slice_of_its_ready_pods(kube, frontend_image):
    from tests.kube.test_workload_kinds import workload_yaml
    from gitopsctl.sandbox.lab.ports import free_port

    manifest = json.loads(workload_yaml("StatefulSet", "web", frontend_image, port=free_port(), replicas=2,
                                        policy="Parallel"))
    apply(kube, json.dumps(manifest))
    apply(kube, textwrap.dedent("""\
        apiVersion: v1
        kind: Service
        metadata:
          name: web
          labels: {app: web}
        spec:
          selector: {app: web}
          ports:
            - name: http
              port: 80
              targetPort: http
        """))
    service = core_api(kube).read_namespaced_service("web", NS)

    def two_ready():
        slices = discovery_api(kube).list_namespaced_endpoint_slice(
            NS, label_selector="kubernetes.io/service-name=web").items
        ready = [e for s in slices for e in s.endpoints or [] if e.conditions.ready]
        return slices if len(slices) == 1 and len(ready) == 2 else None

    slice_ = wait_for(two_ready, 90, "a slice with both pods ready")[0]
    assert re.fullmatch(r"web-[a-z0-9]{5}", slice_.metadata.name)
    assert slice_.metadata.labels["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
    assert slice_.metadata.labels["app"] == "web"
    owner = slice_.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid, owner.controller) == ("Service", "web", service.metadata.uid, True)
    assert slice_.address_type == "IPv4"
    container_port = manifest["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert [(p.name, p.port, p.protocol) for p in slice_.ports] == [("http", container_port, "TCP")]
    pods = {p.metadata.name: p for p in core_api(kube).list_namespaced_pod(NS, label_selector="app=web").items}
    assert {e.target_ref.name for e in slice_.endpoints} == set(pods)
    assert {e.addresses[0] for e in slice_.endpoints} == {p.status.pod_ip for p in pods.values()}
    assert all(e.conditions.serving and not e.conditions.terminating for e in slice_.endpoints)

    answer = wait_for(lambda: get(f"http://{service.spec.cluster_ip}/healthz"), 10, "the pods through the Service")
    assert answer is not None

    core_api(kube).delete_namespaced_service("web", NS)
    wait_for(lambda: not [s for s in kube.store.list(ENDPOINT_SLICES, NS)[0]
                          if s["metadata"]["name"].startswith("web-")], 10, "the managed slice to go with its Service")


def env_printer(name: str, *, exit_after: bool = False) -> str:
    """A pod printing its environment once (then failing, to be restarted, if exit_after)."""
    script = "env; sleep 1; exit 1" if exit_after else "env; exec sleep 600"
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"containers": [{"name": "env", "image": "IMAGE", "command": ["/bin/sh", "-c", script],
                                                "env": [{"name": "BACKEND_SERVICE_PORT", "value": "own"}]
                                                if name == "after" else []}]}})


def logged_env(kube, pod: str) -> dict[str, str] | None:
    run = kubectl(kube, "logs", pod)
    if run.returncode != 0 or "HOSTNAME=" not in run.stdout and "PATH=" not in run.stdout:
        return None
    return dict(line.split("=", 1) for line in run.stdout.splitlines() if "=" in line)


def test_containers_started_after_a_service_get_its_environment_variables(kube, frontend_image):
    apply(kube, env_printer("before", exit_after=True).replace("IMAGE", frontend_image))
    first = wait_for(lambda: logged_env(kube, "before"), 60, "the first pod's environment")
    assert not [k for k in first if k.startswith("BACKEND_")]
    # The `kubernetes` Service of namespace default is in every container's environment.
    kubernetes = core_api(kube).read_namespaced_service("kubernetes", NS)
    assert first["KUBERNETES_SERVICE_HOST"] == kubernetes.spec.cluster_ip
    assert first["KUBERNETES_SERVICE_PORT"] == "443" and first["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"

    apply(kube, textwrap.dedent("""\
        apiVersion: v1
        kind: Service
        metadata:
          name: backend
        spec:
          ports:
            - name: http
              port: 80
            - name: metrics-port
              port: 9100
        """))
    ip = core_api(kube).read_namespaced_service("backend", NS).spec.cluster_ip
    apply(kube, env_printer("after").replace("IMAGE", frontend_image))
    env = wait_for(lambda: logged_env(kube, "after"), 60, "the second pod's environment")
    assert env["BACKEND_SERVICE_HOST"] == ip
    assert env["BACKEND_SERVICE_PORT"] == "own"  # the container's own env wins
    assert env["BACKEND_SERVICE_PORT_HTTP"] == "80" and env["BACKEND_SERVICE_PORT_METRICS_PORT"] == "9100"
    assert env["BACKEND_PORT"] == f"tcp://{ip}:80"
    assert env["BACKEND_PORT_9100_TCP"] == f"tcp://{ip}:9100"
    assert (env["BACKEND_PORT_80_TCP_PROTO"], env["BACKEND_PORT_80_TCP_PORT"], env["BACKEND_PORT_80_TCP_ADDR"]) \
        == ("tcp", "80", ip)

    # The pod made before the Service gets them only in a container the kubelet starts later.
    restarted = wait_for(lambda: (logged_env(kube, "before") or {}).get("BACKEND_SERVICE_HOST"), 60,
                         "the restarted container's environment")
    assert restarted == ip


def test_the_api_server_allocates_cluster_ips_and_keeps_them(kube):
    api = core_api(kube)
    from kubernetes import client

    made = api.create_namespaced_service(NS, {"metadata": {"name": "web"},
                                              "spec": {"selector": {"app": "web"}, "ports": [{"port": 8080}]}})
    block = kube.registry.network
    assert made.spec.cluster_ip.startswith(block) and 200 <= int(made.spec.cluster_ip.rsplit(".", 1)[1]) <= 254
    assert made.spec.cluster_ips == [made.spec.cluster_ip]
    assert (made.spec.ip_families, made.spec.ip_family_policy) == (["IPv4"], "SingleStack")
    assert (made.spec.type, made.spec.session_affinity) == ("ClusterIP", "None")
    assert (made.spec.ports[0].protocol, made.spec.ports[0].target_port) == ("TCP", 8080)

    other = f"{block}254" if made.spec.cluster_ip != f"{block}254" else f"{block}253"
    with pytest.raises(client.ApiException) as changed:
        api.patch_namespaced_service("web", NS, {"spec": {"clusterIP": other, "clusterIPs": [other]}})
    assert changed.value.status == 422
    assert "spec.clusterIPs[0]" in changed.value.body and "may not change once set" in changed.value.body

    # A replace that leaves the allocation out keeps it (what a re-apply does).
    current = api.read_namespaced_service("web", NS)
    current.spec.cluster_ip, current.spec.cluster_ips = None, None
    assert api.replace_namespaced_service("web", NS, current).spec.cluster_ip == made.spec.cluster_ip

    chosen = api.create_namespaced_service(NS, {"metadata": {"name": "chosen"},
                                                "spec": {"clusterIP": other, "ports": [{"port": 80}]}})
    assert chosen.spec.cluster_ip == other
    with pytest.raises(client.ApiException) as outside:
        api.create_namespaced_service(NS, {"metadata": {"name": "outside"},
                                           "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}})
    assert outside.value.status == 422 and "is not in the valid range" in outside.value.body

    headless = api.create_namespaced_service(NS, {"metadata": {"name": "headless"},
                                                  "spec": {"clusterIP": "None", "selector": {"app": "web"},
                                                           "ports": [{"port": 80}]}})
    assert headless.spec.cluster_ip == "None"
    external = api.create_namespaced_service(NS, {"metadata": {"name": "ext"},
                                                  "spec": {"type": "ExternalName", "externalName": "backend.lan"}})
    assert external.spec.cluster_ip is None
    assert kube.service_address("ext") is None  # kube-proxy ignores ExternalName


def test_kubectl_prints_services_and_endpoint_slices_as_a_cluster_does(kube, backends):
    apply(kube, selectorless(backends[0].port))
    ip = kube.service_address("backend")
    run = kubectl(kube, "get", "svc,endpointslices", "-A")
    assert run.returncode == 0, run.stderr
    lines = [line.split() for line in run.stdout.splitlines() if line.strip()]
    assert lines[0] == ["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert ["default", "service/backend", "ClusterIP", ip, "<none>", "80/TCP"] in [row[:6] for row in lines]
    header = lines.index(["NAMESPACE", "NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"])
    assert ["default", "endpointslice.discovery.k8s.io/backend-vm", "IPv4", str(backends[0].port), "127.0.0.1"] \
        in [row[:5] for row in lines[header:]]
    kubernetes = [row for row in lines if row[1] == "service/kubernetes"]
    assert kubernetes and kubernetes[0][5] == "443/TCP"
    # ... and it routes to the API server itself, which asks who is calling.
    insecure = ssl.create_default_context()
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
    with pytest.raises(urllib.error.HTTPError) as unauthorized:
        urllib.request.urlopen(f"https://{kubernetes[0][3]}/version", timeout=3, context=insecure)
    assert unauthorized.value.code == 401


def reconcile(kube, token: str) -> None:
    """What `flux reconcile ks routing --with-source` asks for."""
    request = {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": token}}}
    kube.store.patch(GIT_REPOSITORIES, "flux-system", "flux-system", request)
    kube.store.patch(KUSTOMIZATIONS, "flux-system", "routing", request)


def test_flux_applies_and_prunes_routing_and_its_dry_run_refuses_a_bad_slice(kube, make_git_remote, backends):
    path = "clusters/test/routing"
    kustomization = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [routing.yaml]\n"
    remote = make_git_remote(files={f"{path}/kustomization.yaml": kustomization,
                                    f"{path}/routing.yaml": selectorless(backends[0].port)})
    kube.add_git_repository("flux-system", url=remote.url, branch="main")
    kube.add_kustomization("routing", path=f"./{path}", interval="1m")

    def applied(revision_part: str = ""):
        status = kube.store.get(KUSTOMIZATIONS, "flux-system", "routing").get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
        return ready if ready.get("status") in ("True", "False") and revision_part in ready.get("message", "") \
            else None

    assert wait_for(applied, 30, "the first apply")["status"] == "True"
    service = kube.store.get(SERVICES, NS, "backend")
    assert service["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] == "routing"
    ip = service["spec"]["clusterIP"]
    assert wait_for(lambda: get(f"http://{ip}/"), 5, "routing applied by Flux") == "a /"

    remote.write({f"{path}/routing.yaml": selectorless(backends[1].port)})
    sha = remote.commit_all("move the backend")
    remote.push()
    reconcile(kube, "1")
    wait_for(lambda: applied(sha), 30, "the second apply")
    assert kube.store.get(SERVICES, NS, "backend")["spec"]["clusterIP"] == ip  # the allocation stays
    assert wait_for(lambda: get(f"http://{ip}/") == "b /", 5, "the new port")

    bad = selectorless(backends[1].port).replace('["127.0.0.1"]', '["backend.lan"]')
    remote.write({f"{path}/routing.yaml": bad})
    sha = remote.commit_all("an FQDN in an IPv4 slice")
    remote.push()
    reconcile(kube, "2")
    failed = wait_for(lambda: applied("dry-run failed"), 30, "the dry-run refusal")
    assert failed["reason"] == "ReconciliationFailed"
    assert 'EndpointSlice/default/backend-vm dry-run failed (Invalid): EndpointSlice.discovery.k8s.io "backend-vm"' \
           ' is invalid: endpoints[0].addresses[0]: Invalid value: "backend.lan": must be a valid IPv4 address' \
           in failed["message"]
    assert get(f"http://{ip}/") == "b /"  # nothing of the refused batch was applied

    remote.write({f"{path}/routing.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: left}\n"})
    sha = remote.commit_all("routing removed")
    remote.push()
    reconcile(kube, "3")
    wait_for(lambda: applied(sha), 30, "the pruning apply")
    assert kube.store.find(SERVICES, NS, "backend") is None
    assert kube.store.find(ENDPOINT_SLICES, NS, "backend-vm") is None
    wait_for(lambda: get(f"http://{ip}/") is None, 5, "the cluster IP to stop answering")
