"""The backend VM seen from CI: fabric SSH with strict host keys, remote `gitopsctl sync`.

apply() runs `gitopsctl sync --revision SHA --output json` on the VM and keeps its
answer; wait_healthy() turns that answer into a HealthReport and confirms the HTTP
health URL from the CI side too. Every failure to reach the VM (refused, unknown or
changed host key, authentication, a connection dropped mid-run, a deadline) becomes
a failed report with a clear reason: to the pipeline it is a failed deploy.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import re
import shlex
import socket
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from gitopsctl.errors import ConfigError, ExternalError, InputError
from gitopsctl.health import Check, HealthReport, probe_http

_SHA_RE = re.compile(r"^[0-9a-f]{7,64}$")
_KEY_FILE_ENV = "GITOPSCTL_SSH_KEY_FILE"
_EVIDENCE_LINES = 15


def validate_revision(revision: str) -> str:
    if not isinstance(revision, str) or not _SHA_RE.match(revision):
        raise InputError(f"not a commit SHA: {revision!r}",
                         hint="pass a lowercase hex commit id (7 to 40 characters)")
    return revision


def sync_command(remote_command: str, checkout: str, revision: str, wait_timeout: float) -> str:
    """The remote command line, built from validated pieces and quoted for the remote shell."""
    validate_revision(revision)
    _check_remote_pieces(remote_command, checkout)
    return shlex.join([remote_command, "--repo", checkout, "--output", "json", "sync",
                       "--revision", revision, "--wait-timeout", remote_wait_timeout(wait_timeout)])


def check_command(remote_command: str, checkout: str, wait_timeout: float) -> str:
    """The read-only remote command verify runs: `sync --check` changes nothing on the VM."""
    _check_remote_pieces(remote_command, checkout)
    return shlex.join([remote_command, "--repo", checkout, "--output", "json", "sync", "--check",
                       "--wait-timeout", remote_wait_timeout(wait_timeout)])


def remote_wait_timeout(seconds: float) -> str:
    """Whole seconds inside the range the remote's --wait-timeout accepts (timeouts.failure)."""
    from gitopsctl.config import field_metadata

    md = field_metadata("timeouts.failure")
    return str(int(min(md["maximum"], max(md["minimum"], round(seconds)))))


def _check_remote_pieces(remote_command: str, checkout: str) -> None:
    if not re.match(r"^[\w./-]+$", remote_command):
        raise ConfigError(f"targets.vm.remote_command: not a plain path: {remote_command!r}")
    if not checkout.startswith("/") or "\x00" in checkout or "\n" in checkout:
        raise ConfigError(f"targets.vm.checkout: not an absolute path: {checkout!r}")


def fingerprint(key: Any) -> str:
    """OpenSSH-style SHA256 fingerprint of a paramiko key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass
class RemoteRun:
    """What one remote sync produced, or why there is nothing."""

    document: dict | None = None
    exit_code: int | None = None
    stderr_tail: list[str] = field(default_factory=list)
    error: ExternalError | None = None
    elapsed: float = 0.0


class VMTarget:
    """Backend target: implements the Target protocol from gitopsctl.targets."""

    name = "vm"

    def __init__(self, config: Any, *, environ: Mapping[str, str] | None = None,
                 reporter: Any = None, wait_timeout: float | None = None):
        if config.targets.vm is None:
            raise ConfigError("targets.vm is not configured",
                              hint="add a `targets.vm:` section to gitopsctl.yaml")
        self.config = config
        self.vm = config.targets.vm
        self.environ = dict(os.environ if environ is None else environ)
        self.reporter = reporter
        self.wait_timeout = wait_timeout
        self.last_run: RemoteRun | None = None

    # ------------------------------------------------------------- Target protocol

    def apply(self, revision: str, deadline: float) -> None:
        """Run the remote sync; the outcome is judged by wait_healthy()."""
        self.last_run = self.run_sync(revision, deadline)

    def wait_healthy(self, revision: str, deadline: float) -> HealthReport:
        started = time.monotonic()
        run = self.last_run
        if run is None:
            run = self.last_run = self.run_sync(revision, deadline)
        report = self._report_from_run(run, revision)
        if report.healthy:
            self._confirm_from_ci(report, deadline)
        report.elapsed = run.elapsed + (time.monotonic() - started)
        return report

    def check_health(self) -> HealthReport:
        """One look from CI: the HTTP health URL only (no SSH)."""
        start = time.monotonic()
        result = probe_http(self.vm.health_url, self.config.timeouts.http)
        check = Check("http", result.ok, f"{self.vm.health_url}: {result.message}")
        return HealthReport(target=self.name, healthy=result.ok,
                            reason="" if result.ok else f"backend HTTP health: {result.message}",
                            checks=[check], elapsed=time.monotonic() - start)

    def deploy(self, revision: str, deadline: float) -> HealthReport:
        self.last_run = None
        self.apply(revision, deadline)
        return self.wait_healthy(revision, deadline)

    # ------------------------------------------------------------- SSH

    def observe(self, deadline: float,
                mismatch: Callable[[str], str | None] | None = None) -> HealthReport:
        """verify's look: read-only `sync --check` over SSH, then the health URL from CI.

        `mismatch(revision)` says why the checkout's revision is not what git says is
        live (None when it is); the VM is only healthy when it runs that revision.
        """
        started = time.monotonic()
        wait_timeout = self.wait_timeout or max(1.0, deadline - started - 5)
        command = check_command(self.vm.remote_command, self.vm.checkout, wait_timeout)
        run = self._run_remote(command, "gitopsctl sync --check (read-only)", deadline)
        report = self._report_from_run(run, None)
        live = report.revision
        problem = mismatch(str(live)) if mismatch is not None and live else None
        if problem:
            report.checks.append(Check("revision", False, problem))
            if report.healthy:
                report.healthy, report.reason = False, problem
        elif live and run.error is None:
            report.checks.append(Check("revision", True, f"checkout at {str(live)[:12]}, "
                                                         "what git says is live"))
        if report.healthy:
            self._confirm_from_ci(report, deadline)
        report.elapsed = time.monotonic() - started
        return report

    def _confirm_from_ci(self, report: HealthReport, deadline: float) -> None:
        """The VM's own verdict is confirmed by probing the health URL from CI's side too."""
        http = self._http_from_ci(deadline)
        report.checks.append(http)
        if not http.ok:
            report.healthy = False
            report.reason = f"backend health URL failed from CI: {http.message}"

    def run_sync(self, revision: str, deadline: float) -> RemoteRun:
        """Never raises for VM trouble: failures come back in RemoteRun.error."""
        remaining = deadline - time.monotonic()
        wait_timeout = self.wait_timeout or max(1.0, remaining - 5)
        command = sync_command(self.vm.remote_command, self.vm.checkout, revision, wait_timeout)
        return self._run_remote(command, f"gitopsctl sync --revision {revision[:12]}", deadline)

    def _run_remote(self, command: str, label: str, deadline: float) -> RemoteRun:
        start = time.monotonic()
        remaining = deadline - start
        run = RemoteRun()
        try:
            if remaining <= 0:
                raise ExternalError("no time left to reach the VM (deadline already passed)")
            self._say("action", f"ssh {self.vm.user}@{self._where}: {label}")
            with self.connection() as conn:
                result = self._run(conn, command, deadline)
            run.exit_code = result.exited
            run.stderr_tail = (result.stderr or "").splitlines()[-_EVIDENCE_LINES:]
            if result.exited == -1:
                # paramiko's marker for a channel that closed without an exit status
                raise ExternalError(f"SSH connection to {self._where} dropped while the remote sync ran",
                                    hint="the VM may be rebooting or sshd was restarted; the VM's "
                                         "timer will converge it, the deploy counts as failed",
                                    details={"stderr": run.stderr_tail})
            run.document = self._parse(result.stdout, run)
        except ExternalError as exc:
            run.error = exc
        run.elapsed = time.monotonic() - start
        return run

    @property
    def _where(self) -> str:
        return f"{self.vm.host}:{self.vm.port}"

    @contextmanager
    def connection(self) -> Iterator[Any]:
        """An open fabric Connection that trusts only known host keys."""
        import paramiko
        from fabric import Config, Connection

        with self._known_hosts_file() as known_hosts:
            where, source = self._where, self._known_hosts_source()

            class _RejectUnknown(paramiko.MissingHostKeyPolicy):
                def missing_host_key(self, client, hostname, key):  # noqa: ARG002
                    raise ExternalError(
                        f"SSH host key of {where} is not in known_hosts "
                        f"({key.get_name()} {fingerprint(key)}); refusing to connect",
                        hint=f"verify the fingerprint on the VM (ssh-keygen -lf on its host key), "
                             f"then add it to {source}")

            key_file = self._identity_file()
            connect_kwargs: dict[str, Any] = {
                "allow_agent": False,
                "look_for_keys": key_file is None,
                "banner_timeout": self.config.timeouts.ssh_connect,
                "auth_timeout": self.config.timeouts.ssh_connect,
            }
            if key_file:
                connect_kwargs["key_filename"] = [key_file]
            conn = Connection(self.vm.host, user=self.vm.user, port=self.vm.port,
                              connect_timeout=max(1, int(self.config.timeouts.ssh_connect)),
                              connect_kwargs=connect_kwargs,
                              config=Config(runtime_ssh_path=os.devnull))
            # fabric trusts any host key by default; CI must not.
            conn.client.set_missing_host_key_policy(_RejectUnknown())
            try:
                conn.client.load_host_keys(str(known_hosts))
            except (OSError, paramiko.SSHException) as exc:
                raise ExternalError(f"cannot read known_hosts {known_hosts}: {exc}") from None
            try:
                self._open(conn)
                # a VM that vanishes without closing TCP must not look like a slow sync
                conn.client.get_transport().set_keepalive(10)
                yield conn
            finally:
                conn.close()

    def _open(self, conn: Any) -> None:
        import paramiko

        where, user = self._where, self.vm.user
        try:
            conn.open()
        except ExternalError:
            raise
        except paramiko.BadHostKeyException as exc:
            raise ExternalError(
                f"SSH host key of {where} CHANGED: known_hosts has {fingerprint(exc.expected_key)}, "
                f"the server offered {exc.key.get_name()} {fingerprint(exc.key)}; refusing to connect",
                hint="if the VM was rebuilt, verify the new fingerprint on the VM and replace its "
                     f"line in {self._known_hosts_source()}; otherwise treat this as an attack") from None
        except paramiko.AuthenticationException as exc:
            raise ExternalError(f"SSH authentication as {user}@{where} failed: {exc}",
                                hint="check targets.vm.identity_file / $GITOPSCTL_SSH_KEY_FILE and the "
                                     "VM's authorized_keys for that user") from None
        except paramiko.ssh_exception.NoValidConnectionsError as exc:
            # paramiko folds per-address socket errors into one; refused is the common case
            if all(isinstance(e, ConnectionRefusedError) or getattr(e, "errno", None) == errno.ECONNREFUSED
                   for e in exc.errors.values()):
                raise ExternalError(f"SSH connection to {where} refused",
                                    hint="is sshd running on the VM and is targets.vm.port right?") from None
            raise ExternalError(f"SSH connection to {where} failed: {exc}") from None
        except ConnectionRefusedError:
            raise ExternalError(f"SSH connection to {where} refused",
                                hint="is sshd running on the VM and is targets.vm.port right?") from None
        except (socket.timeout, TimeoutError):
            raise ExternalError(f"SSH connection to {where} timed out after "
                                f"{self.config.timeouts.ssh_connect:g}s",
                                hint="check the VM is up and reachable; timeouts.ssh_connect") from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ExternalError(f"SSH connection to {where} failed: {type(exc).__name__}: {exc}") from None

    def _run(self, conn: Any, command: str, deadline: float) -> Any:
        import paramiko
        from invoke.exceptions import CommandTimedOut

        remaining = max(1, int(deadline - time.monotonic()))
        try:
            return conn.run(command, hide=True, warn=True, in_stream=False, pty=False,
                            timeout=remaining)
        except CommandTimedOut:
            raise ExternalError(f"remote sync on {self._where} did not finish within {remaining}s",
                                hint="raise timeouts.failure, or look at the VM's compose logs") from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ExternalError(f"SSH connection to {self._where} dropped while the remote sync ran: "
                                f"{type(exc).__name__}: {exc}") from None

    def _parse(self, stdout: str, run: RemoteRun) -> dict:
        text = (stdout or "").strip()
        try:
            doc = json.loads(text)
        except ValueError:
            raise ExternalError(
                f"remote sync on {self._where} exited {run.exit_code} without a JSON answer",
                hint="is targets.vm.remote_command the gitopsctl on the VM? stderr: "
                     + " | ".join(run.stderr_tail[-5:]),
                details={"stdout": text[-500:], "stderr": run.stderr_tail}) from None
        if not isinstance(doc, dict):
            raise ExternalError(f"remote sync on {self._where} answered JSON that is not an object")
        return doc

    # ------------------------------------------------------------- judging

    def _report_from_run(self, run: RemoteRun, revision: str | None) -> HealthReport:
        if run.error is not None:
            err = run.error
            return HealthReport(target=self.name, healthy=False, reason=err.message, revision=revision,
                                checks=[Check("ssh", False, err.message,
                                              evidence=[err.hint] if err.hint else [])],
                                details={"error": err.to_dict()})
        doc = run.document or {}
        if "error" in doc and isinstance(doc["error"], dict):
            message = str(doc["error"].get("message", "remote sync failed"))
            return HealthReport(target=self.name, healthy=False, reason=f"VM sync failed: {message}",
                                revision=revision,
                                checks=[Check("sync", False, message, evidence=run.stderr_tail)],
                                details={"remote": doc})
        checks = [Check(str(c.get("name", "?")), bool(c.get("ok")), str(c.get("message", "")),
                        [str(e) for e in c.get("evidence", [])])
                  for c in (doc.get("health") or {}).get("checks", [])]
        healthy = bool(doc.get("healthy")) and run.exit_code == 0
        live = doc.get("revision")
        if revision and healthy and live and not str(live).startswith(revision):
            healthy = False
            checks.append(Check("revision", False, f"VM is at {live}, expected {revision}"))
        reason = "" if healthy else (doc.get("reason") or (doc.get("health") or {}).get("reason")
                                     or f"remote sync exited {run.exit_code}")
        return HealthReport(target=self.name, healthy=healthy, reason=str(reason), revision=live,
                            checks=checks, details={"remote": doc})

    def _http_from_ci(self, deadline: float) -> Check:
        """The VM said healthy; CI must see it too. Retry (bounded by the deadline) briefly."""
        url = self.vm.health_url
        samples = self.config.timeouts.healthy_samples
        ok_in_row = 0
        last = None
        while True:
            last = probe_http(url, self.config.timeouts.http)
            ok_in_row = ok_in_row + 1 if last.ok else 0
            if ok_in_row >= samples:
                return Check("http-ci", True, f"{url}: {last.message} ({samples} samples from CI)")
            if time.monotonic() + 0.5 > deadline:
                return Check("http-ci", False, f"{url}: {last.message}",
                             evidence=[f"status {last.status}", last.message])
            time.sleep(0.5)

    # ------------------------------------------------------------- credentials

    def _identity_file(self) -> str | None:
        raw = self.vm.identity_file or self.environ.get(_KEY_FILE_ENV)
        if not raw:
            return None
        path = Path(os.path.expanduser(raw))
        if not path.is_file():
            raise ExternalError(f"SSH identity file {path} does not exist",
                                hint="set targets.vm.identity_file or $GITOPSCTL_SSH_KEY_FILE")
        return str(path)

    def _known_hosts_source(self) -> str:
        if self.environ.get(self.vm.known_hosts_env):
            return f"${self.vm.known_hosts_env}"
        return os.path.expanduser(self.vm.known_hosts)

    @contextmanager
    def _known_hosts_file(self) -> Iterator[Path]:
        content = self.environ.get(self.vm.known_hosts_env)
        if content:
            # paramiko reads known_hosts from a file; keep the copy private and short-lived.
            fd, name = tempfile.mkstemp(prefix="gitopsctl-known-hosts-")
            try:
                with os.fdopen(fd, "w") as fh:
                    fh.write(content if content.endswith("\n") else content + "\n")
                yield Path(name)
            finally:
                os.unlink(name)
            return
        path = Path(os.path.expanduser(self.vm.known_hosts))
        if not path.is_file():
            raise ExternalError(f"known_hosts file {path} does not exist; host keys are never "
                                "accepted blindly",
                                hint=f"set targets.vm.known_hosts, or put the VM's known_hosts line "
                                     f"in ${self.vm.known_hosts_env} (ssh-keyscan output verified "
                                     f"against the VM)")
        yield path

    def _say(self, verb: str, message: str) -> None:
        if self.reporter is not None:
            getattr(self.reporter, verb)(message)
