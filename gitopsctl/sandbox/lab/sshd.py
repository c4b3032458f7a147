"""A real OpenSSH server standing in for the backend VM.

It listens on 127.0.0.2:<free port> with a host key of its own, accepts only the
client key it generated (no passwords, no keyboard-interactive), and hands remote
commands a fixed environment through `SetEnv`, so a remote `gitopsctl sync` finds the
test Docker engine and the venv's tools. A known_hosts file for it is written next to
the keys. Everything lives under the caller's work dir; several servers (several
test sessions) can run side by side.
"""

from __future__ import annotations

import getpass
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from gitopsctl.errors import ExternalError
from gitopsctl.sandbox.lab.ports import free_port, port_open

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "ssh-keygen"
DEFAULT_HOST = "127.0.0.2"
# sshd refuses to start without its privilege-separation directory; Debian creates it
# only when the system service runs, which it does not on a test machine.
_PRIVSEP_DIR = Path("/run/sshd")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# SetEnv takes double-quoted words; keep values to characters that need no escaping.
_ENV_VALUE = re.compile(r'^[^"\\\n\r]*$')


def generate_key(path: Path, comment: str = "gitopsctl-test") -> Path:
    """An unencrypted ed25519 key pair at path and path.pub."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_suffix(path.suffix + ".pub")):
        stale.unlink(missing_ok=True)
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return path


def known_hosts_line(host: str, port: int, public_key_path: Path) -> str:
    """known_hosts entry for host:port; non-default ports use the [host]:port form."""
    keytype, blob = public_key_path.read_text().split()[:2]
    name = host if port == 22 else f"[{host}]:{port}"
    return f"{name} {keytype} {blob}\n"


@dataclass
class SshServer:
    """A running sshd; `user` logs in with `client_key` and checks `known_hosts`."""

    host: str
    port: int
    user: str
    workdir: Path
    host_key: Path
    client_key: Path
    known_hosts: Path
    environment: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def config_path(self) -> Path:
        return self.workdir / "sshd_config"

    @property
    def log_path(self) -> Path:
        return self.workdir / "sshd.log"

    def start(self, timeout: float = 15.0) -> None:
        """(Re)start on the same port, e.g. after stop() simulated an outage."""
        if self.process is not None and self.process.poll() is None:
            return
        _PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        self.config_path.write_text(self._config_text())
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ExternalError(
                    f"sshd exited with status {self.process.returncode} at start",
                    hint="its log:\n" + self.log_tail())
            if port_open(self.host, self.port, timeout=0.2):
                return
            time.sleep(0.05)
        self.stop()
        raise ExternalError(f"sshd did not listen on {self.host}:{self.port} within {timeout:.0f}s",
                            hint="its log:\n" + self.log_tail())

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the listener and every session it started (they share its process group)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=timeout)
        self.kill_sessions()
        self.process = None

    def session_pids(self) -> list[int]:
        """Per-connection sshd processes (children of the listener)."""
        if self.process is None:
            return []
        return _children(self.process.pid)

    def kill_sessions(self) -> int:
        """SIGKILL every live session: the client sees its connection drop mid-command."""
        killed = 0
        for pid in self.session_pids():
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        return killed

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def write_known_hosts(self, path: Path, key: Path | None = None) -> Path:
        """A known_hosts naming this server with `key` (default: its real host key)."""
        private = key or self.host_key
        pub = private.with_name(private.name + ".pub")
        path.write_text(known_hosts_line(self.host, self.port, pub))
        return path

    def _config_text(self) -> str:
        lines = [
            f"ListenAddress {self.host}:{self.port}",
            f"HostKey {self.host_key}",
            f"PidFile {self.workdir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.workdir / 'authorized_keys'}",
            f"AllowUsers {self.user}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "UsePAM no",
            # the work dir lives under /tmp, whose mode StrictModes rejects
            "StrictModes no",
            "PrintMotd no",
            "X11Forwarding no",
            "AllowTcpForwarding no",
            "LogLevel VERBOSE",
            "Subsystem sftp internal-sftp",
        ]
        if self.environment:
            words = " ".join(f'"{k}={v}"' for k, v in self.environment.items())
            lines.append(f"SetEnv {words}")
        return "\n".join(lines) + "\n"


def start_sshd(workdir: Path | str, *, host: str = DEFAULT_HOST,
               environment: Mapping[str, str] | None = None, user: str | None = None,
               attempts: int = 5) -> SshServer:
    """Generate keys, write the config and start sshd on a free port of `host`."""
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(environment or {})
    for name, value in env.items():
        if not _ENV_NAME.match(name) or not _ENV_VALUE.match(value):
            raise ExternalError(f"cannot pass environment variable {name!r} through sshd SetEnv",
                                hint="names are [A-Za-z_][A-Za-z0-9_]*; values carry no quotes, "
                                     "backslashes or newlines")
    host_key = generate_key(workdir / "ssh_host_ed25519_key", "gitopsctl-test-host")
    client_key = generate_key(workdir / "client_ed25519", "gitopsctl-test-client")
    (workdir / "authorized_keys").write_text(
        client_key.with_name(client_key.name + ".pub").read_text())
    os.chmod(workdir / "authorized_keys", 0o600)
    last_error: ExternalError | None = None
    for _ in range(attempts):
        # Another session may grab the port between free_port() and sshd's bind; retry.
        server = SshServer(host=host, port=free_port(host), user=user or getpass.getuser(),
                           workdir=workdir, host_key=host_key, client_key=client_key,
                           known_hosts=workdir / "known_hosts", environment=env)
        try:
            server.start()
        except ExternalError as exc:
            last_error = exc
            continue
        server.write_known_hosts(server.known_hosts)
        return server
    assert last_error is not None
    raise last_error


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(pid):
            out.append(int(entry.name))
    return out
