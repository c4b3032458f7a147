"""A real image registry on loopback standing in for Harbor.

Debian's docker-registry (Distribution v2, the same v2 API Harbor serves) runs on
127.0.0.1:<free port> with htpasswd (bcrypt) auth for a user named like a Harbor
robot account. It can be stopped and started again on the same port and storage,
so tests can exercise "registry down".

`TokenServer` plus `Registry(token=...)` reproduce Harbor's topology: the registry
answers 401 with a Bearer challenge whose realm is a token service (Harbor's
/service/token), which checks the robot's credentials and issues a signed JWT
the registry verifies.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from gitopsctl.errors import ExternalError
from gitopsctl.sandbox.lab.ports import free_port, port_open

ROBOT_USER = "robot$homelab+ci"
_START_ATTEMPTS = 3  # a free port can be taken between probing and binding


@dataclass
class Registry:
    workdir: Path
    username: str = ROBOT_USER
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18), repr=False)
    port: int = 0
    token: "TokenServer | None" = None
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """host:port as used in image references."""
        return f"127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.url}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # ------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 20.0) -> "Registry":
        """Start (or restart on the same port and storage) and wait until /v2/ answers."""
        if self.running:
            return self
        binary = shutil.which("docker-registry", path=os.pathsep.join(
            [os.environ.get("PATH", ""), "/usr/bin", "/usr/sbin"]))
        if binary is None:
            raise ExternalError("docker-registry is not installed",
                                hint="apt-get install docker-registry (scripts/setup in the "
                                     "gitopsctl repository does this)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_htpasswd()
        fixed_port = self.port != 0
        last_log = ""
        for _ in range(_START_ATTEMPTS):
            if not fixed_port:
                self.port = free_port()
            config = self._write_config()
            log = open(self.workdir / "registry.log", "ab")
            try:
                self.process = subprocess.Popen([binary, "serve", str(config)], stdout=log,
                                                stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL,
                                                start_new_session=True)
            finally:
                log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.process.poll() is None:
                if port_open("127.0.0.1", self.port, timeout=0.2):
                    return self
                time.sleep(0.05)
            last_log = self.log_tail()
            self.stop()
            if fixed_port:
                break
        raise ExternalError(f"docker-registry did not start on {self.url}",
                            hint="its log:\n" + last_log)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        self.process = None

    def restart(self) -> "Registry":
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop and delete storage; the registry cannot be started again."""
        self.stop()
        if self.token is not None:
            self.token.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.workdir / "registry.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def env(self) -> dict[str, str]:
        """Credentials the way gitopsctl reads them (config.registry.*_env defaults)."""
        return {"HARBOR_USERNAME": self.username, "HARBOR_PASSWORD": self.password}

    # ------------------------------------------------------------- files

    def _write_htpasswd(self) -> None:
        import bcrypt

        hashed = bcrypt.hashpw(self.password.encode(), bcrypt.gensalt(rounds=5)).decode()
        path = self.workdir / "htpasswd"
        path.write_text(f"{self.username}:{hashed}\n")
        path.chmod(0o600)

    def _write_config(self) -> Path:
        if self.token is not None:
            auth = {"token": {"realm": self.token.realm, "service": self.token.service,
                              "issuer": self.token.issuer,
                              "rootcertbundle": str(self.token.cert_path)}}
        else:
            auth = {"htpasswd": {"realm": "gitopsctl-test",
                                 "path": str(self.workdir / "htpasswd")}}
        config = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.workdir / "data")},
                        "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": f"127.0.0.1:{self.port}", "secret": secrets.token_hex(16)},
            "auth": auth,
        }
        path = self.workdir / "config.yml"
        # JSON is YAML, and json.dumps quotes every path and secret correctly.
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)
        return path

    def __enter__(self) -> "Registry":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- Harbor-style token service


def libtrust_key_id(public_key_der: bytes) -> str:
    """The key id Distribution expects in a JWT's `kid`: libtrust's fingerprint format.

    SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits, base32, in groups of four.
    """
    digest = hashlib.sha256(public_key_der).digest()[:30]
    encoded = base64.b32encode(digest).decode().rstrip("=")
    return ":".join(encoded[i:i + 4] for i in range(0, len(encoded), 4))


@dataclass
class TokenServer:
    """A token endpoint like Harbor's /service/token, on 127.0.0.1.

    Checks Basic credentials against one robot account and issues ES256 JWTs with the
    requested scope. `issued` counts tokens so tests can see the flow really ran.
    """

    workdir: Path
    username: str = ROBOT_USER
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18), repr=False)
    service: str = "harbor-registry"
    issuer: str = "harbor-token-issuer"
    port: int = 0
    path: str = "/service/token"
    issued: int = 0
    _server: object = field(default=None, repr=False)
    _key: object = field(default=None, repr=False)

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    @property
    def cert_path(self) -> Path:
        return self.workdir / "token-root.pem"

    def start(self) -> "TokenServer":
        from gitopsctl.sandbox.lab.httpserve import serve_in_background

        self.workdir.mkdir(parents=True, exist_ok=True)
        self._make_key()
        self._server = serve_in_background(_token_handler(self), "token-server", self.port)
        self.port = self._server.server_address[1]
        return self

    def stop(self) -> None:
        from gitopsctl.sandbox.lab.httpserve import shut_down

        shut_down(self._server)
        self._server = None

    def _make_key(self) -> None:
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.issuer)])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .sign(key, hashes.SHA256()))
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._key = key

    def issue(self, account: str, scopes: list[str]) -> str:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        header = {"typ": "JWT", "alg": "ES256", "kid": libtrust_key_id(der)}
        now = int(time.time())
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind and name:
                access.append({"type": kind, "name": name,
                               "actions": [a for a in actions.split(",") if a]})
        claims = {"iss": self.issuer, "sub": account, "aud": self.service, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8), "access": access}
        signing_input = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
        der_sig = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der_sig)
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        self.issued += 1
        return signing_input + "." + _b64(signature)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _token_handler(server: TokenServer):
    from http.server import BaseHTTPRequestHandler
    from urllib.parse import parse_qs, urlsplit

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args) -> None:  # keep test output clean
            return None

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != server.path:
                self._reply(404, {"errors": [{"code": "NOT_FOUND"}]})
                return
            query = parse_qs(url.query)
            if query.get("service", [""])[0] != server.service:
                self._reply(400, {"errors": [{"code": "UNSUPPORTED", "message": "bad service"}]})
                return
            user, password = _basic_credentials(self.headers.get("Authorization", ""))
            if not (user == server.username and secrets.compare_digest(password or "",
                                                                       server.password)):
                self._reply(401, {"errors": [{"code": "UNAUTHORIZED",
                                              "message": "bad credentials"}]})
                return
            token = server.issue(user, query.get("scope", []))
            self._reply(200, {"token": token, "access_token": token, "expires_in": 300,
                              "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})

        def _reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _basic_credentials(header: str) -> tuple[str | None, str | None]:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        user, _, password = base64.b64decode(value.strip()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None, None
    return user, password


def start_harbor_like(workdir: Path) -> Registry:
    """A registry behind a Harbor-style token service, sharing one robot account."""
    token = TokenServer(workdir / "token").start()
    registry = Registry(workdir / "registry", username=token.username, password=token.password,
                        token=token)
    try:
        return registry.start()
    except Exception:
        token.stop()
        raise
