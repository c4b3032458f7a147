"""Loading the RSA keys: certificates and public keys to seal, private keys to unseal."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gitopsctl.errors import InputError, Location
from gitopsctl.sealed.validate import b64decode
from gitopsctl.sealed.yamlio import parse_manifest

MIN_KEY_BITS = 2048


def load_public_key(pem_bytes: bytes, *, source: str = "certificate",
                    now: dt.datetime | None = None) -> rsa.RSAPublicKey:
    """The RSA key in an X.509 certificate PEM (as `kubeseal --fetch-cert` prints it) or a
    public key PEM (SPKI "PUBLIC KEY" or PKCS#1 "RSA PUBLIC KEY").

    Like kubeseal, the first certificate of a bundle is used and an expired one is refused:
    the controller may already have rotated to a new key.
    """
    data = bytes(pem_bytes)
    if b"-----BEGIN CERTIFICATE-----" in data:
        try:
            cert = x509.load_pem_x509_certificate(data)
        except ValueError as exc:
            raise InputError(f"not a valid PEM certificate ({exc})",
                             hint="pass the output of `kubeseal --fetch-cert` or a PUBLIC KEY PEM",
                             location=Location(source)) from None
        now = now or dt.datetime.now(dt.timezone.utc)
        not_after = cert.not_valid_after_utc
        if now > not_after:
            raise InputError(f"the certificate expired on {not_after:%Y-%m-%d}",
                             hint="fetch the controller's current certificate with "
                                  "`kubeseal --fetch-cert > cert.pem`",
                             location=Location(source))
        key = cert.public_key()
    elif b"-----BEGIN" in data and b"PUBLIC KEY-----" in data:
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as exc:
            raise InputError(f"not a valid public key PEM ({exc})",
                             hint="make one with `openssl rsa -in key.pem -pubout -out pub.pem`",
                             location=Location(source)) from None
    else:
        hint = ("this is a private key: seal with the public half "
                "(`openssl rsa -in key.pem -pubout -out pub.pem`)"
                if b"PRIVATE KEY-----" in data else
                "pass the output of `kubeseal --fetch-cert` or a PUBLIC KEY PEM")
        raise InputError("no PEM certificate or public key found", hint=hint,
                         location=Location(source))
    if not isinstance(key, rsa.RSAPublicKey):
        raise InputError(f"the key is {type(key).__name__}, sealed secrets need RSA",
                         hint="the sealed-secrets controller and kubeseal use RSA keys only",
                         location=Location(source))
    _check_key_size(key.key_size, source)
    return key


def load_private_key(pem_bytes: bytes, *, source: str = "private key") -> rsa.RSAPrivateKey:
    """An unencrypted RSA private key PEM (PKCS#1 or PKCS#8), or the first key of a
    controller key backup (see load_private_keys)."""
    return load_private_keys(pem_bytes, source=source)[0]


def load_private_keys(data: bytes, *, source: str = "private key") -> list[rsa.RSAPrivateKey]:
    """Every RSA private key in `data`: a PEM key, or a controller key backup, i.e. a
    Secret or a List of Secrets with `tls.key` (`kubectl get secret -n kube-system
    -l sealedsecrets.bitnami.com/sealed-secrets-key -o yaml`)."""
    data = bytes(data)
    if b"PRIVATE KEY-----" in data:
        return [_private_key_from_pem(data, source)]
    if b"tls.key" in data:
        return _private_keys_from_backup(data, source)
    hint = ("this is public material: unsealing needs the private key"
            if b"CERTIFICATE-----" in data or b"PUBLIC KEY-----" in data else
            "make a key pair with `openssl genrsa -out vm-key.pem 4096` "
            "(docs/sealed-secrets.md in the gitopsctl repository)")
    raise InputError("no PEM private key found", hint=hint, location=Location(source))


def _private_key_from_pem(data: bytes, source: str) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise InputError("the private key is encrypted with a passphrase",
                         hint="store it unencrypted with mode 0600: "
                              "`openssl rsa -in enc.pem -out key.pem`",
                         location=Location(source)) from None
    except ValueError as exc:
        raise InputError(f"not a valid private key PEM ({exc})",
                         hint="expected `-----BEGIN RSA PRIVATE KEY-----` or "
                              "`-----BEGIN PRIVATE KEY-----`",
                         location=Location(source)) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InputError(f"the key is {type(key).__name__}, sealed secrets need RSA",
                         hint="make one with `openssl genrsa -out vm-key.pem 4096`",
                         location=Location(source))
    _check_key_size(key.key_size, source)
    return key


def _private_keys_from_backup(data: bytes, source: str) -> list[rsa.RSAPrivateKey]:
    doc = parse_manifest(data.decode("utf-8", errors="replace"), source=source)
    items = doc.get("items") if doc.get("kind") == "List" else [doc]
    if not isinstance(items, list) or not items:
        raise InputError("the key backup holds no Secrets",
                         hint="export it with `kubectl get secret -n kube-system "
                              "-l sealedsecrets.bitnami.com/sealed-secrets-key -o yaml`",
                         location=Location(source))
    keys = []
    for item in items:
        pem = (item.get("data") or {}).get("tls.key") if isinstance(item, dict) else None
        if not isinstance(pem, str):
            raise InputError("a Secret in the key backup has no data.tls.key",
                             hint="the controller stores its keys as kubernetes.io/tls Secrets",
                             location=Location(source))
        keys.append(_private_key_from_pem(b64decode(pem, "data.tls.key", source),
                                          source))
    return keys


def _check_key_size(bits: int, source: str) -> None:
    if bits < MIN_KEY_BITS:
        raise InputError(f"the RSA key has {bits} bits, at least {MIN_KEY_BITS} "
                         "are required", hint="make a 4096-bit key: `openssl genrsa -out key.pem 4096`",
                         location=Location(source))
