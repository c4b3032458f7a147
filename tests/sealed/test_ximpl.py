"""Against implementations that are not ours.

- @socialgouv/aes-gcm-rsa-oaep (WebCrypto, used by SocialGouv's webseal to make
  kubeseal-compatible values): it seals, we unseal; we seal, it decrypts.
- OpenSSL `pkeyutl` unwraps our session key with an explicit OAEP label and node:crypto
  opens the AES-256-GCM part: arbitrary bytes, no shared code with gitopsctl.sealed.
"""

from __future__ import annotations

import base64
import struct
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitopsctl import sealed
from gitopsctl.errors import InputError

from .conftest import XimplError

SETTINGS = settings(max_examples=8, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
# WebCrypto's decrypt hands back text, so values through their decryptor are Unicode text;
# arbitrary bytes go through the OpenSSL path below.
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)
keys_ = st.from_regex(r"[-._a-zA-Z0-9]{1,20}", fullmatch=True).filter(lambda k: k not in (".", ".."))
value_maps = st.dictionaries(keys_, texts, min_size=1, max_size=4)
THEIR_SCOPE = {"strict": "strict", "namespace-wide": "namespace", "cluster-wide": "cluster"}


@SETTINGS
@given(values=value_maps, scope=st.sampled_from(sealed.SCOPES))
def test_theirs_seals_ours_unseals(ximpl, keys, values, scope):
    pair = keys[3]
    manifest = ximpl({"op": "seal", "cert": pair.cert_pem().decode(), "scope": THEIR_SCOPE[scope],
                      "namespace": "backend", "name": "db", "values": values})
    assert sealed.scope_of(manifest["metadata"]) == scope
    expected = {k: v.encode("utf-8") for k, v in values.items()}
    assert sealed.decrypted_items(manifest, pair.private) == expected
    text = sealed.dump_manifest(sealed.unseal_secret(manifest, pair.private))
    assert sealed.parse_manifest(text)["data"] == {
        k: base64.b64encode(v).decode() for k, v in expected.items()}


@SETTINGS
@given(values=value_maps, scope=st.sampled_from(sealed.SCOPES))
def test_ours_seals_theirs_decrypts(ximpl, keys, values, scope):
    pair = keys[0]
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "db", "namespace": "backend"}, "stringData": values}
    manifest = sealed.seal_secret(secret, sealed.load_public_key(pair.cert_pem()), scope)
    label = sealed.encryption_label("backend", "db", scope).decode()
    opened = ximpl({"op": "decrypt", "key": pair.pkcs8_pem().decode(), "label": label,
                    "values": manifest["spec"]["encryptedData"]})
    assert opened == values


def test_theirs_refuses_ours_under_another_scope(ximpl, key):
    """The label really is bound in: their decryptor fails with the wrong scope's label."""
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "db", "namespace": "backend"}, "stringData": {"k": "v"}}
    manifest = sealed.seal_secret(secret, key.public, "strict")
    with pytest.raises(XimplError, match="OperationError"):
        ximpl({"op": "decrypt", "key": key.pkcs8_pem().decode(), "label": "backend",
               "values": manifest["spec"]["encryptedData"]})


def test_ours_refuses_theirs_when_scope_annotation_is_changed(ximpl, key):
    manifest = ximpl({"op": "seal", "cert": key.cert_pem().decode(), "scope": "namespace",
                      "namespace": "backend", "name": "db", "values": {"k": "v"}})
    manifest["metadata"]["annotations"] = {"sealedsecrets.bitnami.com/cluster-wide": "true"}
    with pytest.raises(InputError, match="sealed with scope namespace-wide"):
        sealed.decrypted_items(manifest, key.private)


def openssl_unwrap(key_file, rsa_block: bytes, label: bytes, tmp_path) -> bytes:
    block = tmp_path / "block.bin"
    block.write_bytes(rsa_block)
    argv = ["openssl", "pkeyutl", "-decrypt", "-inkey", str(key_file), "-in", str(block),
            "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256",
            "-pkeyopt", "rsa_mgf1_md:sha256"]
    if label:
        argv += ["-pkeyopt", f"rsa_oaep_label:{label.hex()}"]
    proc = subprocess.run(argv, capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plaintext=st.binary(max_size=512), scope=st.sampled_from(sealed.SCOPES))
def test_openssl_and_node_open_ours_for_any_bytes(ximpl, keys, tmp_path_factory, plaintext, scope):
    pair = keys[3]
    tmp = tmp_path_factory.mktemp("openssl")
    key_file = tmp / "key.pem"
    key_file.write_bytes(pair.private_pem())
    label = sealed.encryption_label("backend", "db", scope)
    blob = sealed.hybrid_encrypt(pair.public, plaintext, label)
    (rsa_len,) = struct.unpack(">H", blob[:2])
    session_key = openssl_unwrap(key_file, blob[2:2 + rsa_len], label, tmp)
    assert len(session_key) == 32
    opened = ximpl({"op": "gcm-open", "key": base64.b64encode(session_key).decode(),
                    "data": base64.b64encode(blob[2 + rsa_len:]).decode()})
    assert base64.b64decode(opened["plaintext"]) == plaintext
