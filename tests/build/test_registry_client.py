"""The registry v2 client against real registries: Basic (htpasswd) and Harbor-style Bearer."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass

import pytest
from hypothesis import given, strategies as st

from gitopsctl.errors import ConfigError, ExternalError
from gitopsctl.sandbox.lab.ports import free_port
from gitopsctl.registry import (Credentials, RegistryClient, load_credentials,
                                parse_challenge)


@dataclass(frozen=True)
class RegistryCfg:
    """The fields of config.Registry the client reads."""

    host: str
    scheme: str = "http"
    username_env: str = "HARBOR_USERNAME"
    password_env: str = "HARBOR_PASSWORD"


def push_base(docker_client, base_image, reg, repo: str, tag: str = "v1") -> str:
    ref = f"{reg.url}/{repo}"
    docker_client.images.get(base_image).tag(ref, tag)
    auth = {"username": reg.username, "password": reg.password}
    digest = ""
    for event in docker_client.api.push(ref, tag=tag, stream=True, decode=True, auth_config=auth):
        assert "error" not in event, event
        digest = (event.get("aux") or {}).get("Digest", digest)
    assert digest.startswith("sha256:")
    return digest


def client_for(reg, password: str | None = None, **kw) -> RegistryClient:
    creds = Credentials(reg.username, password if password is not None else reg.password)
    return RegistryClient(reg.url, "http", creds, **kw)


def test_manifest_digest_with_basic_auth(docker_client, base_image, registry):
    pushed = push_base(docker_client, base_image, registry, "homelab/rc-basic")
    client = client_for(registry)
    assert client.manifest_digest("homelab/rc-basic", "v1") == pushed
    assert client.tags("homelab/rc-basic") == ["v1"]
    assert client.tags("homelab/never-pushed") == []


def test_manifest_digest_through_harbor_token_challenge(docker_client, base_image, harbor):
    pushed = push_base(docker_client, base_image, harbor, "homelab/rc-token")
    issued = harbor.token.issued
    client = client_for(harbor)
    assert client.manifest_digest("homelab/rc-token", "v1") == pushed
    assert harbor.token.issued == issued + 1
    client.manifest_digest("homelab/rc-token", "v1")  # the token is cached per scope
    assert harbor.token.issued == issued + 1


def test_missing_tag_is_a_clear_error(registry):
    with pytest.raises(ExternalError) as err:
        client_for(registry).manifest_digest("homelab/rc-basic", "nope")
    assert "manifest not found" in err.value.message
    assert registry.url in err.value.message


@pytest.mark.parametrize("which", ["registry", "harbor"])
def test_wrong_secret_is_refused_without_leaking_it(which, request):
    reg = request.getfixturevalue(which)
    secret = "s3cr3t-" + "x" * 12
    with pytest.raises(ExternalError) as err:
        client_for(reg, password=secret).check()
    text = json.dumps(err.value.to_dict()) + str(err.value)
    assert "refused our credentials" in err.value.message
    assert secret not in text and reg.password not in text
    assert "HTTP 401" in err.value.message


def test_unreachable_registry_is_retried_a_bounded_number_of_times():
    port = free_port()
    sleeps: list[float] = []
    client = RegistryClient(f"127.0.0.1:{port}", "http", None, attempts=3, backoff=0.01,
                            sleep=sleeps.append)
    start = time.monotonic()
    with pytest.raises(ExternalError) as err:
        client.check()
    assert time.monotonic() - start < 5
    assert sleeps == [0.01, 0.02]
    assert f"http://127.0.0.1:{port}/v2/" in err.value.message
    assert "connection refused" in err.value.message


def test_registry_down_then_up(registry_env):
    reg = registry_env
    reg.stop()
    client = client_for(reg, attempts=2, backoff=0.01)
    with pytest.raises(ExternalError):
        client.check()
    reg.start()
    client.check()


def test_credentials_from_environment_and_docker_config(tmp_path):
    cfg = RegistryCfg(host="harbor.lan")
    env = {"HARBOR_USERNAME": "robot$homelab+ci", "HARBOR_PASSWORD": "pw"}
    creds = load_credentials(cfg, env)
    assert (creds.username, creds.password) == ("robot$homelab+ci", "pw")
    assert "pw" not in repr(creds)

    (tmp_path / "config.json").write_text(json.dumps({"auths": {
        "https://harbor.lan": {"auth": base64.b64encode(b"robot$homelab+ci:from-file").decode()}}}))
    creds = load_credentials(cfg, {"DOCKER_CONFIG": str(tmp_path)})
    assert creds.password == "from-file"
    assert load_credentials(RegistryCfg(host="other.lan"), {"DOCKER_CONFIG": str(tmp_path)}) is None


def test_half_a_credential_pair_is_a_config_error():
    with pytest.raises(ConfigError) as err:
        load_credentials(RegistryCfg(host="h"), {"HARBOR_USERNAME": "robot$x"})
    assert "HARBOR_PASSWORD" in err.value.message


def test_broken_docker_config_names_file_and_line(tmp_path):
    (tmp_path / "config.json").write_text('{\n  "auths": nope\n}')
    with pytest.raises(ConfigError) as err:
        load_credentials(RegistryCfg(host="h"), {"DOCKER_CONFIG": str(tmp_path)})
    assert str(err.value.location).endswith("config.json:2:12")


def test_harbor_style_challenge_is_parsed():
    ch = parse_challenge('Bearer realm="https://harbor.lan/service/token",service="harbor-registry",'
                         'scope="repository:homelab/frontend:pull,push"')
    assert ch.scheme == "bearer"
    assert ch.params == {"realm": "https://harbor.lan/service/token", "service": "harbor-registry",
                         "scope": "repository:homelab/frontend:pull,push"}


_values = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=30)


@given(st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), _values, max_size=4))
def test_any_quoted_params_survive_parsing(params):
    header = "Bearer " + ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in params.items())
    assert parse_challenge(header).params == params


def test_tags_follow_link_pagination():
    """Distribution 2.8 returns every tag at once; Harbor pages with n/last and a Link
    header. A tiny real HTTP server on loopback pages the same way."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlsplit

    all_tags = [f"t{i}" for i in range(7)]

    class Pager(BaseHTTPRequestHandler):
        def log_message(self, *args):
            return None

        def do_GET(self):
            url = urlsplit(self.path)
            q = parse_qs(url.query)
            n, last = int(q.get("n", ["100"])[0]), q.get("last", [""])[0]
            rest = [t for t in all_tags if t > last]
            page, more = rest[:n], rest[n:]
            body = json.dumps({"name": "homelab/paged", "tags": page}).encode()
            self.send_response(200)
            if more:
                link = f"{url.path}?n={n}&last={page[-1]}"
                # alternate relative and absolute links: registries send both
                if len(page) and page[-1] in ("t1", "t5"):
                    link = f"http://127.0.0.1:{self.server.server_address[1]}{link}"
                self.send_header("Link", f'<{link}>; rel="next"')
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Pager)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = RegistryClient(f"127.0.0.1:{server.server_address[1]}", "http", None)
        assert client.tags("homelab/paged", page_size=2) == all_tags
        assert client.tags("homelab/paged", page_size=2, max_pages=2) == all_tags[:4]
    finally:
        server.shutdown()
        server.server_close()
