"""kubeseal's hybrid encryption of one value.

    uint16 big-endian len(R) || R || AES-256-GCM(session key, zero nonce, plaintext) || tag
    R = RSA-OAEP(SHA-256, MGF1-SHA-256, label)(32 random bytes: the session key)

The zero nonce is safe only because every value gets a fresh session key.
"""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SESSION_KEY_BYTES = 32
_GCM_NONCE = bytes(12)
_GCM_TAG_BYTES = 16


def _oaep(label: bytes) -> padding.OAEP:
    # An empty label must be passed as None: both mean "hash of the empty string" in OAEP.
    return padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()),
                        algorithm=hashes.SHA256(), label=label or None)


def hybrid_encrypt(public_key: rsa.RSAPublicKey, plaintext: bytes, label: bytes) -> bytes:
    session_key = os.urandom(SESSION_KEY_BYTES)
    wrapped = public_key.encrypt(session_key, _oaep(label))
    sealed = AESGCM(session_key).encrypt(_GCM_NONCE, bytes(plaintext), None)
    return struct.pack(">H", len(wrapped)) + wrapped + sealed


class DecryptFailure(Exception):
    """Why one value did not decrypt; `reason` is one of the class constants."""

    TRUNCATED = "truncated"        # too short to hold the declared RSA block and a GCM tag
    KEY_SIZE = "key-size"          # RSA block length is not this key's size: another key
    UNWRAP = "unwrap"              # OAEP failed: wrong key, or a label (scope/name) mismatch
    AUTHENTICATION = "auth"        # session key fine, AES-GCM tag wrong: data was modified

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def hybrid_decrypt(private_key: rsa.RSAPrivateKey, ciphertext: bytes, label: bytes) -> bytes:
    """Inverse of hybrid_encrypt; raises DecryptFailure saying which layer refused."""
    if len(ciphertext) < 2:
        raise DecryptFailure(DecryptFailure.TRUNCATED, "shorter than its 2-byte length prefix")
    (rsa_len,) = struct.unpack(">H", ciphertext[:2])
    if len(ciphertext) < 2 + rsa_len + _GCM_TAG_BYTES:
        raise DecryptFailure(DecryptFailure.TRUNCATED,
                             f"{len(ciphertext)} bytes cannot hold a {rsa_len}-byte RSA block "
                             "and an AES-GCM tag")
    key_bytes = (private_key.key_size + 7) // 8
    if rsa_len != key_bytes:
        raise DecryptFailure(DecryptFailure.KEY_SIZE,
                             f"its RSA block is {rsa_len * 8} bits, this key is "
                             f"{private_key.key_size} bits")
    wrapped = ciphertext[2:2 + rsa_len]
    try:
        session_key = private_key.decrypt(wrapped, _oaep(label))
    except ValueError:
        raise DecryptFailure(DecryptFailure.UNWRAP) from None
    if len(session_key) != SESSION_KEY_BYTES:
        raise DecryptFailure(DecryptFailure.UNWRAP, "the unwrapped session key has the wrong size")
    try:
        return AESGCM(session_key).decrypt(_GCM_NONCE, ciphertext[2 + rsa_len:], None)
    except InvalidTag:
        raise DecryptFailure(DecryptFailure.AUTHENTICATION) from None
