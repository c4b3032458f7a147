"""The hybrid RSA-OAEP + AES-256-GCM layer: wire format, round trips, tampering."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitopsctl import sealed
from gitopsctl.sealed import DecryptFailure, encryption_label, hybrid_decrypt, hybrid_encrypt

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

names = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)


def test_labels_match_kubeseal_per_scope():
    assert encryption_label("backend", "db", "strict") == b"backend/db"
    assert encryption_label("backend", "db", "namespace-wide") == b"backend"
    assert encryption_label("backend", "db", "cluster-wide") == b""
    with pytest.raises(ValueError):
        encryption_label("backend", "db", "galaxy-wide")


@pytest.mark.parametrize("index", [0, 3])
def test_wire_format_is_length_prefix_rsa_block_then_gcm(keys, index):
    pair = keys[index]
    blob = hybrid_encrypt(pair.public, b"hunter2", b"backend/db")
    key_bytes = pair.private.key_size // 8
    assert struct.unpack(">H", blob[:2]) == (key_bytes,)
    assert len(blob) == 2 + key_bytes + len(b"hunter2") + 16  # GCM adds a 16-byte tag
    assert b"hunter2" not in blob


def test_fresh_session_key_every_time(key):
    first = hybrid_encrypt(key.public, b"same", b"l")
    second = hybrid_encrypt(key.public, b"same", b"l")
    assert first != second
    assert first[2 + 256:] != second[2 + 256:]  # the AES part differs too: new key, zero nonce


@SETTINGS
@given(plaintext=st.binary(max_size=2048), key_index=st.integers(0, 3),
       scope=st.sampled_from(sealed.SCOPES), namespace=names, name=names)
def test_round_trip_any_bytes_any_key_any_scope(keys, plaintext, key_index, scope, namespace, name):
    pair = keys[key_index]
    label = encryption_label(namespace, name, scope)
    assert hybrid_decrypt(pair.private, hybrid_encrypt(pair.public, plaintext, label),
                          label) == plaintext


@SETTINGS
@given(plaintext=st.binary(min_size=0, max_size=64), data=st.data())
def test_tampering_with_any_byte_fails(key, plaintext, data):
    blob = bytearray(hybrid_encrypt(key.public, plaintext, b"ns/n"))
    position = data.draw(st.integers(0, len(blob) - 1), label="position")
    flip = data.draw(st.integers(1, 255), label="xor")
    blob[position] ^= flip
    with pytest.raises(DecryptFailure) as caught:
        hybrid_decrypt(key.private, bytes(blob), b"ns/n")
    region = ("prefix" if position < 2 else "rsa" if position < 2 + 256 else "aes")
    expected = {"prefix": {DecryptFailure.TRUNCATED, DecryptFailure.KEY_SIZE},
                "rsa": {DecryptFailure.UNWRAP},
                "aes": {DecryptFailure.AUTHENTICATION}}[region]
    assert caught.value.reason in expected


@SETTINGS
@given(cut=st.integers(1, 300))
def test_truncation_fails(key, cut):
    blob = hybrid_encrypt(key.public, b"0123456789", b"")
    with pytest.raises(DecryptFailure):
        hybrid_decrypt(key.private, blob[:-cut], b"")


@pytest.mark.parametrize("sealed_scope,opened_scope", [
    ("strict", "namespace-wide"), ("strict", "cluster-wide"),
    ("namespace-wide", "strict"), ("cluster-wide", "namespace-wide")])
def test_other_label_fails_to_unwrap(key, sealed_scope, opened_scope):
    blob = hybrid_encrypt(key.public, b"v", encryption_label("ns", "n", sealed_scope))
    with pytest.raises(DecryptFailure) as caught:
        hybrid_decrypt(key.private, blob, encryption_label("ns", "n", opened_scope))
    assert caught.value.reason == DecryptFailure.UNWRAP


def test_wrong_key_of_same_size_fails_to_unwrap(key, other_key):
    blob = hybrid_encrypt(key.public, b"v", b"")
    with pytest.raises(DecryptFailure) as caught:
        hybrid_decrypt(other_key.private, blob, b"")
    assert caught.value.reason == DecryptFailure.UNWRAP


def test_wrong_key_of_other_size_is_named(keys):
    blob = hybrid_encrypt(keys[3].public, b"v", b"")
    with pytest.raises(DecryptFailure) as caught:
        hybrid_decrypt(keys[0].private, blob, b"")
    assert caught.value.reason == DecryptFailure.KEY_SIZE
    assert "4096" in caught.value.detail and "2048" in caught.value.detail
