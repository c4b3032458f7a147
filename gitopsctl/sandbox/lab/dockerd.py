"""A private Docker engine for tests and the sandbox.

Each engine gets its own data root, exec root, pid file and socket, and runs with no
bridge and no iptables so it never touches the host's network set-up; containers use
host networking and bind to 127.0.0.1. Several engines (several test sessions) can run
side by side on one machine.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitopsctl.errors import ExternalError

# dockerd and the containerd it supervises listen on unix sockets whose path must fit
# in sockaddr_un (107 bytes); pytest's tmp paths can be longer, so the run-time state
# lives in a short directory under /tmp instead of the work dir.
_SHORT_RUN_BASE = "/tmp"
DOCKERD_FLAGS = ("--bridge=none", "--iptables=false", "--ip6tables=false",
                 # no ip_forward sysctl change on the host; host networking needs none
                 "--ip-forward=false", "--ip-masq=false", "--userland-proxy=false")


def ping(docker_host: str, timeout: float = 2.0) -> bool:
    """True when the engine at docker_host answers GET /_ping with 200.

    Speaks raw HTTP so callers need not import the docker SDK just to probe.
    """
    try:
        if docker_host.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(docker_host[len("unix://"):])
        elif docker_host.startswith("tcp://"):
            host, _, port = docker_host[len("tcp://"):].rstrip("/").rpartition(":")
            sock = socket.create_connection((host, int(port)), timeout=timeout)
        else:
            return False
        with sock:
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = sock.recv(256)
        return reply.split(b"\r\n", 1)[0].split(b" ")[1:2] == [b"200"]
    except (OSError, ValueError, IndexError):
        return False


@dataclass
class DockerEngine:
    """A Docker engine reachable at `docker_host`; `owned` engines were started by us."""

    docker_host: str
    owned: bool = False
    workdir: Path | None = None
    run_dir: Path | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)
    _clients: list[Any] = field(default_factory=list, repr=False)

    # ------------------------------------------------------------- start / reuse

    @classmethod
    def start(cls, workdir: Path | str, timeout: float = 60.0) -> "DockerEngine":
        """Start dockerd for `workdir` and wait (until `timeout`) for it to answer."""
        workdir = Path(workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        dockerd = shutil.which("dockerd", path=_tool_path())
        if dockerd is None:
            raise ExternalError("dockerd is not installed",
                                hint="apt-get install docker.io (scripts/setup in the "
                                     "gitopsctl repository does this)")
        run_dir = Path(tempfile.mkdtemp(prefix="gd-", dir=_SHORT_RUN_BASE))
        sock = run_dir / "docker.sock"
        # A system containerd would be shared by every engine; own namespaces keep
        # engines from seeing each other's containers if dockerd picks it up.
        namespace = f"gitopsctl-{secrets.token_hex(4)}"
        args = [dockerd, *DOCKERD_FLAGS,
                f"--host=unix://{sock}",
                f"--data-root={workdir / 'data'}",
                f"--exec-root={run_dir / 'x'}",
                f"--pidfile={run_dir / 'docker.pid'}",
                f"--containerd-namespace={namespace}",
                f"--containerd-plugins-namespace={namespace}-plugins"]
        log = open(workdir / "dockerd.log", "ab")
        try:
            process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, env=_dockerd_env(),
                                       start_new_session=True)
        finally:
            log.close()
        engine = cls(docker_host=f"unix://{sock}", owned=True, workdir=workdir,
                     run_dir=run_dir, process=process)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = engine.log_tail()
                engine._cleanup_dirs()
                raise ExternalError(f"dockerd exited with status {process.returncode} at start",
                                    hint="see its log:\n" + tail)
            if ping(engine.docker_host):
                return engine
            time.sleep(0.1)
        tail = engine.log_tail()
        engine.stop()
        raise ExternalError(f"dockerd did not answer on {sock} within {timeout:.0f}s",
                            hint="see its log:\n" + tail)

    # ------------------------------------------------------------- use

    def env(self) -> dict[str, str]:
        """Environment for docker SDK calls and the docker / docker-compose binaries."""
        return {"DOCKER_HOST": self.docker_host}

    def client(self, timeout: int = 300):
        """A docker.DockerClient for this engine; closed by stop()."""
        import docker

        client = docker.DockerClient(base_url=self.docker_host, timeout=timeout)
        self._clients.append(client)
        return client

    def ping(self) -> bool:
        return ping(self.docker_host)

    def log_tail(self, lines: int = 20) -> str:
        if self.workdir is None:
            return ""
        try:
            text = (self.workdir / "dockerd.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # ------------------------------------------------------------- stop

    def stop(self, timeout: float = 30.0) -> None:
        """Remove our containers, stop dockerd and its containerd, unmount, clean up.

        An engine we merely connected to is left running untouched.
        """
        for client in self._clients:
            try:
                client.close()
            except Exception:  # closing is best effort; the engine goes away next
                pass
        self._clients.clear()
        if not self.owned:
            return
        if self.process is not None and self.process.poll() is None:
            self._remove_containers()
            self._signal_and_wait(self.process.pid, timeout)
            try:
                self.process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        self._kill_managed_containerd(timeout)
        self._unmount_under([p for p in (self.run_dir, self.workdir) if p])
        self._cleanup_dirs()

    def _remove_containers(self) -> None:
        import docker

        try:
            client = docker.DockerClient(base_url=self.docker_host, timeout=30)
        except Exception:
            return
        try:
            for container in client.containers.list(all=True):
                try:
                    container.remove(force=True)
                except Exception:  # already gone, or dockerd is shutting down
                    pass
        except Exception:
            pass
        finally:
            client.close()

    def _kill_managed_containerd(self, timeout: float) -> None:
        if self.run_dir is None:
            return
        pid_file = self.run_dir / "x" / "containerd" / "containerd.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        # The pid may have been reused; only touch a process started with our config.
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return
        if str(self.run_dir) in cmdline:
            self._signal_and_wait(pid, timeout)

    @staticmethod
    def _signal_and_wait(pid: int, timeout: float) -> None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.1)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return

    @staticmethod
    def _unmount_under(roots: list[Path]) -> None:
        prefixes = tuple(str(r) + "/" for r in roots)
        try:
            mounts = Path("/proc/self/mounts").read_text().splitlines()
        except OSError:
            return
        points = [line.split()[1] for line in mounts if len(line.split()) > 1]
        # deepest first, so nested mounts go before their parents
        for point in sorted((p for p in points if p.startswith(prefixes)), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)

    def _cleanup_dirs(self) -> None:
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        if self.workdir is not None:
            shutil.rmtree(self.workdir / "data", ignore_errors=True)

    def __enter__(self) -> "DockerEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def connect_or_start(workdir: Path | str, timeout: float = 60.0) -> DockerEngine:
    """Reuse an engine that already answers (DOCKER_HOST, then the default socket), or start one."""
    candidates = []
    if os.environ.get("DOCKER_HOST"):
        candidates.append(os.environ["DOCKER_HOST"])
    candidates.append("unix:///var/run/docker.sock")
    for host in candidates:
        if ping(host):
            return DockerEngine(docker_host=host, owned=False)
    return DockerEngine.start(workdir, timeout=timeout)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # a zombie has exited; only its parent's wait() is missing
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _tool_path() -> str:
    return os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin", "/bin"])


def _dockerd_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DOCKER_") and k not in ("HTTP_PROXY", "HTTPS_PROXY",
                                                       "http_proxy", "https_proxy")}
    env["PATH"] = _tool_path()
    return env
