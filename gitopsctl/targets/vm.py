"""A VM target seen from CI: fabric SSH with strict host keys, remote `gitopsctl sync`.

One VMTarget serves every service bound to one VM target of gitopsctl.yaml. apply() runs
`gitopsctl sync --target NAME --revision SHA --output json` on the VM and keeps its
answer, which judges each service by its own checks there; wait_healthy() turns that
answer into a HealthReport whose checks are named per service ("worker: compose"), and
confirms the services' http and tcp checks from CI's side too (a compose check can only
be seen on the VM). `for_service(name)` is the same run seen as one service's report.
Every failure to reach the VM (refused, unknown or changed host key, authentication, a
connection dropped mid-run, a deadline) becomes a failed report with a clear reason: to
the pipeline it is a failed deploy.
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
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from gitopsctl.config import _NAME_RE
from gitopsctl.errors import ConfigError, ExternalError, InputError
from gitopsctl.health import Check, HealthReport
from gitopsctl.targets import vmreport

_SHA_RE = re.compile(r"^[0-9a-f]{7,64}$")
_KEY_FILE_ENV = "GITOPSCTL_SSH_KEY_FILE"
_EVIDENCE_LINES = 15


def validate_revision(revision: str) -> str:
    if not isinstance(revision, str) or not _SHA_RE.match(revision):
        raise InputError(f"not a commit SHA: {revision!r}",
                         hint="pass a lowercase hex commit id (7 to 40 characters)")
    return revision


def sync_command(remote_command: str, checkout: str, revision: str, wait_timeout: float,
                 target: str = "vm") -> str:
    """The remote command line, built from validated pieces and quoted for the remote shell."""
    validate_revision(revision)
    _check_remote_pieces(remote_command, checkout, target)
    return shlex.join([remote_command, "--repo", checkout, "--output", "json", "sync",
                       "--target", target, "--revision", revision,
                       "--wait-timeout", remote_wait_timeout(wait_timeout)])


def check_command(remote_command: str, checkout: str, wait_timeout: float,
                  target: str = "vm") -> str:
    """The read-only remote command verify runs: `sync --check` changes nothing on the VM."""
    _check_remote_pieces(remote_command, checkout, target)
    return shlex.join([remote_command, "--repo", checkout, "--output", "json", "sync",
                       "--target", target, "--check",
                       "--wait-timeout", remote_wait_timeout(wait_timeout)])


def remote_wait_timeout(seconds: float) -> str:
    """Whole seconds inside the range the remote's --wait-timeout accepts (timeouts.failure)."""
    from gitopsctl.config import field_metadata

    md = field_metadata("timeouts.failure")
    return str(int(min(md["maximum"], max(md["minimum"], round(seconds)))))


def _check_remote_pieces(remote_command: str, checkout: str, target: str) -> None:
    if not re.match(_NAME_RE, target):
        raise ConfigError(f"targets.{target!r}: not a target name")
    if not re.match(r"^[\w./-]+$", remote_command):
        raise ConfigError(f"targets.{target}.remote_command: not a plain path: {remote_command!r}")
    if not checkout.startswith("/") or "\x00" in checkout or "\n" in checkout:
        raise ConfigError(f"targets.{target}.checkout: not an absolute path: {checkout!r}")


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
    """One VM target and every service bound to it: the Target protocol of gitopsctl.targets.

    The protocol's methods take an optional `service`: with it, the report is that
    service's part of the run; without it, the whole target's (checks named per service).
    """

    def __init__(self, config: Any, target: str | None = None, *,
                 environ: Mapping[str, str] | None = None, reporter: Any = None,
                 wait_timeout: float | None = None):
        vms = config.targets_of_kind("vm")
        if target is None:
            if len(vms) != 1:
                raise ConfigError(f"{config.path}: {len(vms)} VM targets, which one is meant?"
                                  if vms else f"{config.path}: no VM target is configured",
                                  hint=f"name one of: {', '.join(vms)}" if vms else
                                  "add a target with `kind: vm` to gitopsctl.yaml")
            target = next(iter(vms))
        elif target not in vms:
            raise ConfigError(f"{config.path}: {target!r} is not a VM target",
                              hint=f"VM targets: {', '.join(vms) or '(none)'}")
        self.config = config
        self.name = target
        self.vm = vms[target]
        self.services = config.services_on(target)
        self.environ = dict(os.environ if environ is None else environ)
        self.reporter = reporter
        self.wait_timeout = wait_timeout
        self.last_run: RemoteRun | None = None
        # Its services are waited for from several threads, and a stopped wait may still be
        # in its sync when the rollback starts the next: one sync at a time, and a wait
        # without an apply runs the sync once for all of them.
        self._sync_lock = threading.Lock()
        self._early: Any = None  # an sshearly.EarlyConnection once preconnect() was asked

    def preconnect(self) -> None:
        """Open the SSH connection for the next sync now, in the background (CI's stage
        asks while an earlier group is still deploying): the handshake is then off the
        deploy's path. Any trouble is left to the sync's own connect to report."""
        from gitopsctl.targets.sshearly import EarlyConnection

        if self._early is None:
            self._early = EarlyConnection(self).start()

    def for_service(self, service: str) -> "ServiceOnVM":
        """The Target of one service on this VM: same SSH runs, that service's reports."""
        if service not in self.services:
            raise ConfigError(f"service {service!r} is not bound to VM target {self.name!r}",
                              hint=f"services on it: {', '.join(self.services) or '(none)'}")
        return ServiceOnVM(self, service)

    # ------------------------------------------------------------- Target protocol

    def apply(self, revision: str, deadline: float) -> None:
        """Run the remote sync; the outcome is judged by wait_healthy()."""
        with self._sync_lock:
            self.last_run = self.run_sync(revision, deadline)

    def wait_healthy(self, revision: str, deadline: float, service: str | None = None) -> HealthReport:
        started = time.monotonic()
        with self._sync_lock:
            run = self.last_run
            if run is None:
                run = self.last_run = self.run_sync(revision, deadline)
        report = vmreport.whole_report(self.name, run, revision)
        if report.healthy:
            vmreport.confirm_from_ci(report, self.config, self._scope(service), deadline)
        report.elapsed = run.elapsed + (time.monotonic() - started)
        return self._narrow(report, service)

    def check_health(self, service: str | None = None) -> HealthReport:
        """One look: the http and tcp checks from CI; over SSH (read-only) only when a
        service in scope has no check CI can probe (its containers are all there is)."""
        scope = self._scope(service)
        blind = [s for s in scope if not vmreport.ci_probes(self.config, [s])]
        if not blind:
            return self._narrow(vmreport.look_from_ci(self.config, self.name, scope), service)
        return self.observe(time.monotonic() + min(60.0, self.config.timeouts.failure),
                            service=service)

    def deploy(self, revision: str, deadline: float) -> HealthReport:
        self.last_run = None
        self.apply(revision, deadline)
        return self.wait_healthy(revision, deadline)

    def observe(self, deadline: float, mismatch: Callable[[str], str | None] | None = None,
                service: str | None = None) -> HealthReport:
        """verify's look: read-only `sync --check` over SSH, then the CI-side probes.

        `mismatch(revision)` says why the checkout's revision is not what git says is
        live (None when it is); the VM is only healthy when it runs that revision.
        """
        started = time.monotonic()
        wait_timeout = self.wait_timeout or max(1.0, deadline - started - 5)
        command = check_command(self.vm.remote_command, self.vm.checkout, wait_timeout, self.name)
        run = self._run_remote(command, f"gitopsctl sync --target {self.name} --check (read-only)",
                               deadline)
        report = vmreport.whole_report(self.name, run, None)
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
            vmreport.confirm_from_ci(report, self.config, self._scope(service), deadline)
        report.elapsed = time.monotonic() - started
        return self._narrow(report, service)

    def _scope(self, service: str | None) -> tuple[str, ...]:
        return self.services if service is None else (service,)

    def _narrow(self, report: HealthReport, service: str | None) -> HealthReport:
        return report if service is None else vmreport.service_report(report, service)

    # ------------------------------------------------------------- SSH

    def run_sync(self, revision: str, deadline: float) -> RemoteRun:
        """Never raises for VM trouble: failures come back in RemoteRun.error."""
        remaining = deadline - time.monotonic()
        wait_timeout = self.wait_timeout or max(1.0, remaining - 5)
        command = sync_command(self.vm.remote_command, self.vm.checkout, revision, wait_timeout,
                               self.name)
        return self._run_remote(command, f"gitopsctl sync --target {self.name} "
                                         f"--revision {revision[:12]}", deadline)

    def _run_remote(self, command: str, label: str, deadline: float) -> RemoteRun:
        start = time.monotonic()
        remaining = deadline - start
        run = RemoteRun()
        try:
            if remaining <= 0:
                raise ExternalError("no time left to reach the VM (deadline already passed)")
            self._say("action", f"ssh {self.vm.user}@{self._where}: {label}")
            early, self._early = self._early, None
            opened = early.take() if early is not None else None
            with (opened if opened is not None else self.connection()) as conn:
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
    def _refused_hint(self) -> str:
        return f"is sshd running on the VM and is targets.{self.name}.port right?"

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
                                hint=f"check targets.{self.name}.identity_file / "
                                     "$GITOPSCTL_SSH_KEY_FILE and the VM's authorized_keys for "
                                     "that user") from None
        except paramiko.ssh_exception.NoValidConnectionsError as exc:
            # paramiko folds per-address socket errors into one; refused is the common case
            if all(isinstance(e, ConnectionRefusedError) or getattr(e, "errno", None) == errno.ECONNREFUSED
                   for e in exc.errors.values()):
                raise ExternalError(f"SSH connection to {where} refused", hint=self._refused_hint) from None
            raise ExternalError(f"SSH connection to {where} failed: {exc}") from None
        except ConnectionRefusedError:
            raise ExternalError(f"SSH connection to {where} refused", hint=self._refused_hint) from None
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
                hint=f"is targets.{self.name}.remote_command the gitopsctl on the VM? stderr: "
                     + " | ".join(run.stderr_tail[-5:]),
                details={"stdout": text[-500:], "stderr": run.stderr_tail}) from None
        if not isinstance(doc, dict):
            raise ExternalError(f"remote sync on {self._where} answered JSON that is not an object")
        return doc

    # ------------------------------------------------------------- credentials

    def _identity_file(self) -> str | None:
        raw = self.vm.identity_file or self.environ.get(_KEY_FILE_ENV)
        if not raw:
            return None
        path = Path(os.path.expanduser(raw))
        if not path.is_file():
            raise ExternalError(f"SSH identity file {path} does not exist",
                                hint=f"set targets.{self.name}.identity_file or $GITOPSCTL_SSH_KEY_FILE")
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
                                hint=f"set targets.{self.name}.known_hosts, or put the VM's known_hosts line "
                                     f"in ${self.vm.known_hosts_env} (ssh-keyscan output verified "
                                     f"against the VM)")
        yield path

    def _say(self, verb: str, message: str) -> None:
        if self.reporter is not None:
            getattr(self.reporter, verb)(message)


class ServiceOnVM:
    """One service's view of a VMTarget (the Target the engine follows that service with).

    Services on one VM target share its runs: applying one syncs them all."""

    def __init__(self, vm: VMTarget, service: str):
        self.vm = vm
        self.service = service
        self.name = vm.name

    def apply(self, revision: str, deadline: float) -> None:
        self.vm.apply(revision, deadline)

    def wait_healthy(self, revision: str, deadline: float) -> HealthReport:
        return self.vm.wait_healthy(revision, deadline, service=self.service)

    def check_health(self) -> HealthReport:
        return self.vm.check_health(service=self.service)

    def observe(self, deadline: float,
                mismatch: Callable[[str], str | None] | None = None) -> HealthReport:
        return self.vm.observe(deadline, mismatch, service=self.service)


