"""Keys, certificates and the independent implementation the sealed-secret tests share."""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

HERE = Path(__file__).parent
XIMPL_DIR = HERE / "ximpl"


@dataclass(frozen=True)
class KeyPair:
    private: rsa.RSAPrivateKey

    @property
    def public(self) -> rsa.RSAPublicKey:
        return self.private.public_key()

    def private_pem(self, fmt=serialization.PrivateFormat.TraditionalOpenSSL) -> bytes:
        return self.private.private_bytes(serialization.Encoding.PEM, fmt,
                                          serialization.NoEncryption())

    def pkcs8_pem(self) -> bytes:
        return self.private_pem(serialization.PrivateFormat.PKCS8)

    def public_pem(self) -> bytes:
        return self.public.public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)

    def cert_pem(self, *, days: int = 3650, not_before: dt.datetime | None = None) -> bytes:
        return self_signed_cert(self.private, days=days, not_before=not_before)


def self_signed_cert(key: rsa.RSAPrivateKey, *, days: int = 3650,
                     not_before: dt.datetime | None = None) -> bytes:
    """A certificate shaped like the one the sealed-secrets controller publishes."""
    start = not_before or dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sealed-secret"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sealed-secret")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="session")
def keys() -> list[KeyPair]:
    """Three fresh 2048-bit pairs, then the 4096-bit key a real sealed-secrets controller
    generated (tests/sealed/vectors; reused because 4096-bit generation is slow)."""
    from gitopsctl import sealed

    fresh = [KeyPair(rsa.generate_private_key(public_exponent=65537, key_size=2048))
             for _ in range(3)]
    controller = sealed.load_private_key((HERE / "vectors" / "kseal-example-key.yaml").read_bytes())
    return [*fresh, KeyPair(controller)]


@pytest.fixture(scope="session")
def key(keys) -> KeyPair:
    return keys[0]


@pytest.fixture(scope="session")
def other_key(keys) -> KeyPair:
    return keys[1]


@pytest.fixture()
def key_files(tmp_path, key):
    """(cert.pem, key.pem) on disk, the key with mode 0600 as the docs ask."""
    cert = tmp_path / "cert.pem"
    cert.write_bytes(key.cert_pem())
    private = tmp_path / "key.pem"
    private.write_bytes(key.private_pem())
    private.chmod(0o600)
    return cert, private


# --------------------------------------------------------------------------- ximpl

def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gitopsctl-tests"


@pytest.fixture(scope="session")
def ximpl_node_modules() -> Path:
    """node_modules for tests/sealed/ximpl, installed once with `npm ci` from the committed
    lock file into a cache directory keyed by that lock (outside the working tree, shared
    safely by concurrent sessions: install in a private directory, then rename)."""
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.fail("node and npm are required for the cross-implementation test "
                    "(Debian: apt-get install nodejs npm)")
    digest = hashlib.sha256((XIMPL_DIR / "package.json").read_bytes()
                            + (XIMPL_DIR / "package-lock.json").read_bytes()).hexdigest()[:16]
    root = _cache_root()
    final = root / f"sealed-ximpl-{digest}"
    marker = final / "node_modules" / "@socialgouv" / "aes-gcm-rsa-oaep" / "package.json"
    if marker.exists():
        return final / "node_modules"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".sealed-ximpl.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time; others then reuse it
        if not marker.exists():
            work = root / f".sealed-ximpl-{uuid.uuid4().hex}"
            work.mkdir()
            for name in ("package.json", "package-lock.json"):
                shutil.copy2(XIMPL_DIR / name, work / name)
            proc = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                                  cwd=work, capture_output=True, text=True, timeout=300)
            if proc.returncode != 0:
                shutil.rmtree(work, ignore_errors=True)
                pytest.fail(f"npm ci for the cross-implementation test failed:\n{proc.stderr[-2000:]}")
            if final.exists():
                shutil.rmtree(final)
            os.rename(work, final)
    return final / "node_modules"


@pytest.fixture(scope="session")
def ximpl(ximpl_node_modules):
    """Call the independent implementation: ximpl(request dict) -> answer."""
    env = {**os.environ, "NODE_PATH": str(ximpl_node_modules)}

    def call(request: dict):
        proc = subprocess.run(["node", str(XIMPL_DIR / "ximpl.js")], input=json.dumps(request),
                              capture_output=True, text=True, env=env, timeout=60)
        if proc.returncode != 0:
            raise XimplError(proc.stderr.strip())
        return json.loads(proc.stdout)

    return call


class XimplError(Exception):
    pass
