"""The frontend reaches the backend through a route Flux applies, and gitopsctl checks it.

On the lab: clusters/homelab/routing/backend (a Service without selector and an EndpointSlice
naming the VM's backend) is applied by the Flux Kustomization `routing`; the emulator gives the
Service a cluster IP, its kube-proxy forwards to the slice's endpoint (the VM's backend, outside
the cluster), and its kubelet gives the frontend's containers BACKEND_SERVICE_HOST/PORT. The
frontend's /api/version asks the backend through that; the `consistency:` pair of the lab's
gitopsctl.yaml asks the frontend after every stage. Every test leaves the lab live, healthy and
routed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e.drive import build, records, remote_message, run_json, served

pytestmark = pytest.mark.e2e

SLICE = "clusters/homelab/routing/backend/endpointslice.yaml"
PAIR = "frontend→backend"
STALE = "0123456789abcdef0123456789abcdef01234567"


def kubectl(lab, *args: str) -> str:
    kubectl_bin = Path(sys.executable).parent / "kubectl"
    return subprocess.run([str(kubectl_bin), "--kubeconfig", str(lab.workdir / "kube" / "kubeconfig"),
                           *args], capture_output=True, text=True, check=True, timeout=60).stdout


def container_env(lab, pod: str, namespace: str = "default") -> dict[str, str]:
    """The environment the kubelet gave the pod's running container, as Docker holds it."""
    from gitopsctl.sandbox.lab.kube.kubelet import LABEL

    (container,) = lab.client.containers.list(filters={"label": f"{LABEL}.pod={namespace}/{pod}"})
    return dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])


def route(lab) -> str | None:
    return lab.served_version("route")


def commit(lab, files: dict[str, str], message: str) -> str:
    sha = lab.commit_app_change(files, message)
    build(lab, sha)
    return sha


def deploy(lab, text: str, extra: dict[str, str] | None = None) -> str:
    sha = commit(lab, {"examples/frontend/www/index.html": f"{text}\n",
                       "examples/backend/www/index.html": f"{text}\n", **(extra or {})}, f"app: {text}")
    code, doc, err = run_json(lab, "stage", "--source", sha)
    assert code == 0 and doc["outcome"] == "deployed", err
    return sha


def slice_text(lab) -> str:
    return (lab.ci / SLICE).read_text()


def test_flux_applies_the_route_and_the_frontend_answers_through_it(shared_lab):
    lab = shared_lab
    service = json.loads(kubectl(lab, "get", "service", "backend", "-n", "default", "-o", "json"))
    assert "selector" not in service["spec"]
    cluster_ip = service["spec"]["clusterIP"]
    assert cluster_ip.startswith("127.") and cluster_ip != "127.0.0.1"
    slices = json.loads(kubectl(lab, "get", "endpointslices", "-n", "default", "-l",
                                "kubernetes.io/service-name=backend", "-o", "json"))["items"]
    assert [(e["addresses"], s["ports"][0]["port"]) for s in slices for e in s["endpoints"]] == \
        [(["127.0.0.1"], lab.backend_port)]  # the VM's backend: an address outside the cluster
    routing = json.loads(kubectl(lab, "get", "kustomizations.kustomize.toolkit.fluxcd.io", "routing",
                                 "-n", "flux-system", "-o", "json"))
    assert routing["status"]["lastAppliedRevision"].startswith("main@sha1:")
    assert route(lab) == lab.served_version("backend")


def test_the_frontend_pods_get_the_backend_service_variables(shared_lab):
    lab = shared_lab
    cluster_ip = json.loads(kubectl(lab, "get", "service", "backend", "-o", "json"))["spec"]["clusterIP"]
    pods = json.loads(kubectl(lab, "get", "pods", "-l", "app.kubernetes.io/name=frontend", "-o", "json"))["items"]
    assert pods
    for pod in pods:
        env = container_env(lab, pod["metadata"]["name"])
        assert env["BACKEND_SERVICE_HOST"] == cluster_ip
        assert env["BACKEND_SERVICE_PORT"] == "80" and env["BACKEND_SERVICE_PORT_HTTP"] == "80"
        assert env["BACKEND_PORT"] == f"tcp://{cluster_ip}:80"
        assert env["BACKEND_PORT_80_TCP_ADDR"] == cluster_ip
        # the pod's own env wins: PORT is the frontend's listening port, not a service's
        assert env["PORT"] == "8080"


def test_a_good_deploy_is_checked_through_the_route(shared_lab):
    lab = shared_lab
    sha = commit(lab, {"examples/frontend/www/index.html": "routed\n",
                       "examples/backend/www/index.html": "routed\n"}, "app: routed")
    code, doc, err = run_json(lab, "stage", "--source", sha)
    assert code == 0 and doc["outcome"] == "deployed", err
    step = next(s for s in doc["steps"] if s["name"] == f"consistency {PAIR}")
    assert step["status"] == "ok" and step["data"]["seen"] == sha and step["data"]["expected"] == sha
    assert route(lab) == sha

    code, checked, err = run_json(lab, "verify")
    assert code == 0 and checked["consistent"] is True, err
    assert checked["consistency"][0]["seen"] == sha
    code, shown, err = run_json(lab, "status")
    assert code == 0 and shown["consistent"] is True and shown["consistency"][0]["pair"] == PAIR, err
    text = lab.gitopsctl("status")
    assert f"consistency {PAIR}: ok" in text.stdout


def test_a_backend_the_frontend_cannot_use_rolls_both_back(shared_lab):
    lab = shared_lab
    before = deploy(lab, "before-incompatible")
    sha = commit(lab, {"examples/backend/fail-mode": "incompatible\n",
                       "examples/frontend/www/index.html": "incompatible\n"}, "backend: API moved to /v2")
    code, doc, err = run_json(lab, "stage", "--source", sha)
    assert code == 1 and doc["outcome"] == "rolled-back", err
    # each half was healthy on its own: only the pair failed
    steps = {s["name"]: s["status"] for s in doc["steps"]}
    assert steps["frontend healthy"] == "ok" and steps["backend healthy"] == "ok"
    assert steps[f"consistency {PAIR}"] == "failed"
    (rollback,) = [r for r in records(lab, sha) if r.kind == "rollback"]
    deploys = [r.commit for r in records(lab, sha) if r.kind == "deploy"]
    assert len(deploys) == 2 and all(any(d.startswith(x) for x in rollback.reverts) for d in deploys)
    message = remote_message(lab, rollback.commit)
    assert PAIR in rollback.reason and "HTTP 502" in rollback.reason
    assert f"Gitopsctl-Failed-Check: consistency {PAIR}" in message
    assert "404" in message  # the backend's answer, relayed by the frontend, is the evidence
    assert doc["rollback"]["verified"] is True and doc["rollback"]["consistency"][0]["ok"] is True
    assert served(lab) == {"frontend": before, "backend": before} and route(lab) == before
    deploy(lab, "mended-incompatible", {"examples/backend/fail-mode": "none\n"})


@pytest.fixture
def stale_backend():
    """An old backend somewhere else: answers /version with a stale SHA."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            body = f"{STALE}\n".encode()
            self.send_response(200 if self.path.rstrip("/") in ("/version", "/healthz") else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_route_to_the_wrong_backend_is_caught_and_the_rollback_says_it_is_in_git(shared_lab, stale_backend):
    lab = shared_lab
    before = deploy(lab, "before-misroute")
    original = slice_text(lab)
    misrouted = original.replace(f"port: {lab.backend_port}", f"port: {stale_backend}")
    assert misrouted != original
    sha = commit(lab, {SLICE: misrouted, "examples/backend/www/index.html": "misrouted\n"},
                 "routing: point the backend Service at another port")
    code, doc, err = run_json(lab, "stage", "--source", sha)
    # the deploy commits are reverted, but the route is part of the source, not of them
    assert code == 3 and doc["outcome"] == "rollback-failed", err
    (rollback,) = [r for r in records(lab, sha) if r.kind == "rollback"]
    assert PAIR in rollback.reason and STALE[:12] in rollback.reason
    assert "that git says is live" in rollback.reason
    notes = " ".join(doc["rollback"]["notes"])
    assert "the cause is not in the reverted deploy commits" in notes
    assert served(lab) == {"frontend": before, "backend": before}
    assert route(lab) == STALE

    code, checked, _ = run_json(lab, "verify", "--timeout", "5s")
    assert code == 1 and checked["consistent"] is False
    # the fix is a commit, like everything else
    deploy(lab, "route-mended", {SLICE: original})
    assert route(lab) == lab.served_version("backend") != STALE
