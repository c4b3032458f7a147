"""The registry stand-ins: htpasswd auth, stop/start, Harbor-style Bearer tokens, real pushes."""

from __future__ import annotations

import requests

from gitopsctl.sandbox.lab.ports import port_open
from gitopsctl.sandbox.lab.registry import ROBOT_USER, libtrust_key_id


def _session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # loopback only; never through a proxy
    return s


def test_basic_auth_guards_the_v2_api(registry):
    s = _session()
    assert registry.username == ROBOT_USER
    assert registry.url.startswith("127.0.0.1:")
    anonymous = s.get(f"{registry.base_url}/v2/", timeout=5)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic ")
    assert s.get(f"{registry.base_url}/v2/", auth=(registry.username, "wrong"), timeout=5).status_code == 401
    assert s.get(f"{registry.base_url}/v2/", auth=(registry.username, registry.password),
                 timeout=5).status_code == 200


def test_registry_can_go_down_and_come_back_on_the_same_port(registry_env):
    reg = registry_env
    port = reg.port
    reg.stop()
    assert not port_open("127.0.0.1", port)
    reg.start()
    assert reg.port == port
    assert _session().get(f"{reg.base_url}/v2/", auth=(reg.username, reg.password),
                          timeout=5).status_code == 200


def test_engine_pushes_to_registry_with_robot_credentials(docker_client, base_image, registry):
    ref = f"{registry.url}/homelab/harness-push"
    docker_client.images.get(base_image).tag(ref, "t1")
    docker_client.login(registry.username, registry.password, registry=registry.url, reauth=True)
    events = list(docker_client.api.push(ref, tag="t1", stream=True, decode=True))
    assert not [e for e in events if "error" in e], events
    tags = _session().get(f"{registry.base_url}/v2/homelab/harness-push/tags/list",
                          auth=(registry.username, registry.password), timeout=5).json()
    assert tags["tags"] == ["t1"]


def test_harbor_like_registry_challenges_with_bearer_realm(harbor):
    reply = _session().get(f"{harbor.base_url}/v2/", timeout=5)
    assert reply.status_code == 401
    challenge = reply.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'realm="{harbor.token.realm}"' in challenge
    assert harbor.token.realm.endswith("/service/token")


def test_engine_pushes_through_the_token_flow(docker_client, base_image, harbor):
    ref = f"{harbor.url}/homelab/harness-token"
    docker_client.images.get(base_image).tag(ref, "t1")
    docker_client.login(harbor.username, harbor.password, registry=harbor.url, reauth=True)
    issued = harbor.token.issued
    events = list(docker_client.api.push(ref, tag="t1", stream=True, decode=True))
    assert not [e for e in events if "error" in e], events
    assert harbor.token.issued > issued


def test_token_service_refuses_wrong_secret(harbor):
    reply = _session().get(harbor.token.realm, params={"service": harbor.token.service},
                           auth=(harbor.username, "nope"), timeout=5)
    assert reply.status_code == 401


def test_libtrust_key_id_shape():
    kid = libtrust_key_id(b"any der bytes")
    groups = kid.split(":")
    assert len(groups) == 12 and all(len(g) == 4 for g in groups)
