"""gitopsctl.redact: registered values and credential patterns never reach output."""

from __future__ import annotations

import base64
import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitopsctl import redact
from gitopsctl.redact import MARKER


@pytest.fixture(autouse=True)
def _fresh_registry():
    redact.reset()
    yield
    redact.reset()


long_secrets = st.text(min_size=redact.ANYWHERE_LENGTH, max_size=40).filter(lambda s: s.strip() == s)


@settings(max_examples=300, deadline=None)
@given(secret=long_secrets, before=st.text(max_size=40), after=st.text(max_size=40))
def test_a_registered_secret_never_survives_in_any_text(secret, before, after):
    redact.reset()
    redact.register(secret)
    if secret in MARKER:
        return  # the marker itself is public; such a value is never registered
    out = redact.redact(before + secret + after)
    assert secret not in out


@settings(max_examples=200, deadline=None)
@given(secrets=st.lists(long_secrets, min_size=2, max_size=4), glue=st.text(max_size=6))
def test_overlapping_secrets_leave_no_tail_of_either(secrets, glue):
    redact.reset()
    redact.register_all(secrets)
    text = glue.join(secrets) + secrets[0][3:] + secrets[-1]
    out = redact.redact(text)
    for secret in secrets:
        if secret not in MARKER:
            assert secret not in out


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_text_without_secrets_or_credentials_is_unchanged(text):
    redact.register("Zq9-only-this-secret-Zq9")
    if any(mark in text.lower() for mark in ("://", "authorization", "bearer", "basic", "password",
                                             "passwd", "token", "auth", "secret", "key")):
        return
    assert redact.redact(text) == text


def test_short_values_are_hidden_only_as_whole_tokens():
    redact.register("abc")        # below MIN_LENGTH: would erase ordinary text; not registered
    redact.register("hunter")     # short: whole tokens only
    assert redact.redact("abc abcdef") == "abc abcdef"
    assert redact.redact("password is hunter.") == f"password is {MARKER}."
    assert redact.redact("API_TOKEN=hunter") == f"API_TOKEN={MARKER}"
    assert redact.redact("hunters and manhunter stay") == "hunters and manhunter stay"


def test_long_values_are_hidden_everywhere_and_line_by_line():
    redact.register(b"first-line-secret\nsecond-line-secret\n")
    assert redact.redact("xxfirst-line-secretyy") == f"xx{MARKER}yy"
    assert redact.redact("log: second-line-secret") == f"log: {MARKER}"


def test_escaped_forms_are_hidden_too():
    secret = 'quo"te\\back-slash'
    redact.register(secret)
    assert secret not in redact.redact(f"raw {secret}")
    assert json.dumps(secret)[1:-1] not in redact.redact(json.dumps({"v": secret}))
    assert repr(secret)[1:-1] not in redact.redact(f"got {secret!r}")


@pytest.mark.parametrize("text, hidden, kept", [
    ("fatal: unable to access 'https://ci:s3cr3t-token@git.lan/homelab.git/'",
     ["s3cr3t-token", "ci:"], ["https://", "@git.lan/homelab.git"]),
    ("https://ghp_abcdefgh1234@github.com/x", ["ghp_abcdefgh1234"], ["github.com/x"]),
    ("push to ssh://deploy:p@ss@host.lan/repo", ["p@ss", "ss@host"], ["host.lan/repo"]),
    ("Authorization: Bearer eyJhbGciOi.abc.def", ["eyJhbGciOi"], ["Authorization: Bearer "]),
    ("{'Authorization': 'Basic dXNlcjpwYXNz'}", ["dXNlcjpwYXNz"], ["Authorization"]),
    ("header Bearer abcd1234efgh5678", ["abcd1234efgh5678"], ["Bearer"]),
    ("curl -H Basic dXNlcjpwYXNzd29yZA==", ["dXNlcjpwYXNzd29yZA"], ["Basic"]),
    ('{"auths": {"harbor.lan": {"auth": "cm9ib3Q6c2VjcmV0"}}}', ["cm9ib3Q6c2VjcmV0"], ["harbor.lan"]),
    ("HARBOR_PASSWORD=Robot-Secret-1 docker login", ["Robot-Secret-1"], ["docker login"]),
    ('{"client-key-data": "LS0tLS1CRUdJTg=="}', ["LS0tLS1CRUdJTg"], ["client-key-data"]),
    ("login --password=hunter2hunter2 ok", ["hunter2hunter2"], ["--password=", " ok"]),
    ('answer {"token": "eyJ0eXAi.x.y", "expires_in": 300}', ["eyJ0eXAi"], ["expires_in"]),
])
def test_credential_patterns(text, hidden, kept):
    out = redact.redact(text)
    for secret in hidden:
        assert secret not in out, out
    for part in kept:
        assert part in out, out
    assert MARKER in out


@pytest.mark.parametrize("text", [
    "Basic authentication is not configured",
    "the bearer token expired",
    "password_env: HARBOR_PASSWORD",
    'challenge WWW-Authenticate: Bearer realm="https://harbor.lan/service/token",service="harbor"',
    "secretRef: backend-secrets not found",
    # a SealedSecret as `gitopsctl seal` prints it: the data key is a name, the value sealed
    "spec:\n  encryptedData:\n    password: AgBy3i4OJSWK+PiTySYZZA9rO43cGDEq\n",
    "see https://git.lan/homelab.git and mail ops@homelab.lan",
    "image harbor.lan/homelab/backend:main-1a2b3c4-1764160000@sha256:" + "a" * 64,
])
def test_ordinary_output_is_left_alone(text):
    assert redact.redact(text) == text


def test_redact_obj_copies_and_redacts_keys_values_and_odd_objects():
    redact.register("the-secret-value")
    from pathlib import Path

    doc = {"ok": False, "n": 3, "x": None, "logs": ["a", "token is the-secret-value"],
           "the-secret-value": ("t", 1.5), "path": Path("/tmp/the-secret-value")}
    out = redact.redact_obj(doc)
    assert "the-secret-value" not in json.dumps(out)
    assert out["ok"] is False and out["n"] == 3 and out["x"] is None
    assert out["logs"] == ["a", f"token is {MARKER}"]
    assert doc["logs"][1] == "token is the-secret-value"  # the input is untouched
    assert out["path"] == f"/tmp/{MARKER}"


def test_redacting_file_redacts_every_write_and_delegates_the_rest():
    redact.register("stream-secret-42")
    target = io.StringIO()
    stream = redact.RedactingFile(lambda: target)
    stream.write("x stream-secret-42 y\n")
    stream.writelines(["stream-secret-42\n"])
    stream.flush()
    assert target.getvalue() == f"x {MARKER} y\n{MARKER}\n"
    assert stream.isatty() is False


def test_rich_console_on_a_redacting_file():
    from rich.console import Console

    redact.register("rich-secret-value")
    target = io.StringIO()
    console = Console(file=redact.RedactingFile(lambda: target), no_color=True, soft_wrap=True)
    console.print("[bold]look[/bold]: rich-secret-value")
    assert target.getvalue() == f"look: {MARKER}\n"


def test_basic_credentials_are_hidden_in_base64_when_registered_by_the_registry_client():
    from gitopsctl.registry import Credentials

    Credentials("robot$homelab+ci", "Sup3r-Secret-Robot")
    blob = base64.b64encode(b"robot$homelab+ci:Sup3r-Secret-Robot").decode()
    out = redact.redact(f"password Sup3r-Secret-Robot auth {blob}")
    assert "Sup3r-Secret-Robot" not in out and blob not in out


def test_every_kubeconfig_credential_is_found(tmp_path):
    from gitopsctl.targets.kubeapi import kubeconfig_secrets

    key_pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "users": [
        {"name": "ci", "user": {"token": "kube-token-123456"}},
        {"name": "admin", "user": {"username": "admin", "password": "kube-pass-123456",
                                   "client-key-data": base64.b64encode(key_pem.encode()).decode()}},
        {"name": "oidc", "user": {"auth-provider": {"name": "oidc", "config": {
            "id-token": "oidc-id-token-1", "refresh-token": "oidc-refresh-1", "idp-issuer-url": "x"}}}},
        {"name": "exec", "user": {"exec": {"env": [{"name": "TOKEN", "value": "exec-env-secret"}]}}},
    ]}))
    found = kubeconfig_secrets(path)
    for value in ("kube-token-123456", "kube-pass-123456", "oidc-id-token-1", "oidc-refresh-1",
                  "exec-env-secret", key_pem):
        assert value in found
    assert "admin" not in found and "x" not in found
    redact.register_all(found)
    assert "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" not in redact.redact("key: MIIEvQIBADANBgkqhkiG9w0BAQEFAASC")
    assert kubeconfig_secrets(tmp_path / "missing") == []
