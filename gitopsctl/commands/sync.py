"""gitopsctl sync: runs ON the VM, from the systemd timer or from CI over SSH.

lock -> git fetch -> fast-forward to origin/<branch> (or --revision, which must be on
that branch) -> unseal secrets into the env file -> docker compose pull + up --wait
-> container and HTTP health -> status recorded under the state dir and returned.

A run at the revision that is already live and healthy is a no-op: nothing is
pulled, nothing is (re)created, and the result says "unchanged".

`sync --check` (what `gitopsctl verify` runs over SSH) changes nothing at all: no lock,
no fetch, no env file, no compose pull or up, no status file. It reports the revision
the checkout stands on and the stack's health, action "checked".
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import re
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from gitopsctl.errors import (EXIT_OK, ConfigError, ExternalError, InputError, Superseded,
                              UsageError)
from gitopsctl.repo import NETWORK_TIMEOUT

STATUS_FILE = "sync-status.json"
LOCK_FILE = "sync.lock"
_SHA_RE = re.compile(r"^[0-9a-f]{7,64}$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
EXIT_UNHEALTHY = 1


@dataclass
class SyncResult:
    revision: str
    previous_revision: str | None
    branch: str
    action: str                      # "updated" | "unchanged" | "failed" | "checked"
    healthy: bool
    reason: str = ""
    images: dict[str, dict] = field(default_factory=dict)
    health: dict = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)
    env_file: str | None = None
    finished_at: float = field(default_factory=time.time)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.healthy else EXIT_UNHEALTHY

    def to_dict(self) -> dict:
        return {"ok": self.healthy, **dataclasses.asdict(self)}

    def render_text(self, console: Any) -> None:
        mark = "✔" if self.healthy else "✗"
        moved = (f"{(self.previous_revision or 'nothing')[:12]} → {self.revision[:12]}"
                 if self.previous_revision != self.revision else self.revision[:12])
        console.print(f"{mark} sync {self.action}: {self.branch} at {moved}", markup=False)
        if self.reason:
            console.print(f"  reason: {self.reason}", markup=False)
        for name, image in sorted(self.images.items()):
            console.print(f"  image {name}: {image.get('reference')} "
                          f"({(image.get('digest') or image.get('image_id') or '?')[:19]})", markup=False)
        for check in self.health.get("checks", []):
            console.print(f"  {'ok  ' if check['ok'] else 'FAIL'} {check['message']}", markup=False)
            if not check["ok"]:
                for line in check.get("evidence", [])[:20]:
                    console.print(f"       {line}", markup=False)
        timing = ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items())
        console.print(f"  timings: {timing}", markup=False)


def sync(ctx, revision: str | None = None, wait_timeout: float | None = None,
         systemd_units: Path | None = None, check: bool = False, **_: Any) -> Any:
    from gitopsctl import config as config_mod

    if check and (revision is not None or systemd_units is not None):
        raise UsageError("--check only looks: it takes no --revision or --systemd-units",
                         hint="run `gitopsctl sync --check` alone")
    if systemd_units is not None:
        return _install_units(ctx, Path(systemd_units))
    started = time.monotonic()
    if revision is not None and not _SHA_RE.match(revision):
        raise UsageError(f"--revision: not a commit SHA: {revision!r}",
                         hint="pass a lowercase hex commit id, e.g. the deploy commit CI pushed")
    cfg = ctx.config
    if cfg.targets.vm is None:
        raise ConfigError(f"{cfg.path}: targets.vm is not configured",
                          hint="sync runs on the VM and needs a `targets.vm:` section")
    checkout = Path(ctx.repo)
    if not (checkout / ".git").exists():
        raise UsageError(f"{checkout} is not a git checkout",
                         hint="pass --repo with the VM's clone of the homelab repository "
                              "(targets.vm.checkout)")
    wait = float(wait_timeout) if wait_timeout else cfg.timeouts.failure
    if wait <= 0:
        raise UsageError("--wait-timeout must be positive")
    deadline = started + wait
    if check:
        return _check(ctx, cfg, checkout, deadline, started)
    state_dir = checkout / cfg.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    rep = ctx.reporter
    timings: dict[str, float] = {}
    steps: list[str] = []

    with _lock(state_dir / LOCK_FILE, deadline, rep):
        timings["lock"] = time.monotonic() - started
        branch, remote = cfg.git.branch, cfg.git.remote
        t = time.monotonic()
        rep.action(f"fetching {remote}/{branch}")
        _git(checkout, "fetch", "--quiet", "--no-tags", remote,
             f"+refs/heads/{branch}:refs/remotes/{remote}/{branch}")
        timings["fetch"] = time.monotonic() - t
        before = _git(checkout, "rev-parse", "HEAD")
        tip = _git(checkout, "rev-parse", "--verify", f"refs/remotes/{remote}/{branch}^{{commit}}")
        target = _resolve_target(checkout, tip, f"{remote}/{branch}", revision)
        moved = _fast_forward(checkout, before, target, tip)
        if moved:
            steps.append(f"fast-forwarded {before[:12]} → {target[:12]}")
            rep.success(f"checkout moved {before[:12]} → {target[:12]}")
        # the config, compose file and secrets of the revision we now stand on
        cfg = config_mod.load(ctx.config_path, root=checkout, environ=ctx.environ)
        vm = cfg.targets.vm
        if vm is None:
            raise ConfigError(f"{cfg.path}: targets.vm is not configured at {target[:12]}")

        t = time.monotonic()
        env_file, env_changed = _write_env_file(cfg, checkout)
        timings["unseal"] = time.monotonic() - t
        if env_changed:
            steps.append("env file rewritten")

        previous = _read_status(state_dir)
        from gitopsctl.compose import Compose

        compose = Compose(project=vm.compose_project, file=_inside(checkout, vm.compose_file,
                                                                      "targets.vm.compose_file"),
                          env_file=env_file, environ=ctx.environ)
        result = SyncResult(revision=target, previous_revision=(previous or {}).get("revision") or before,
                            branch=branch, action="updated", healthy=False,
                            env_file=str(env_file) if env_file else None)
        same = (not moved and not env_changed and previous is not None
                and previous.get("revision") == target and previous.get("healthy"))
        if same:
            # Already converged last time: look, and only act if it drifted.
            rep.action(f"{target[:12]} is already live; checking it is still healthy")
            # a short look: a stack that is not healthy within a few samples gets converged
            look_until = min(deadline, time.monotonic() + 2 * cfg.timeouts.healthy_samples + 10)
            report, images = _evaluate(cfg, compose, look_until, rep, timings)
            if report.healthy:
                result.action = "unchanged"
                steps.append("no change: same revision, stack healthy")
                return _finish(result, report, images, timings, steps, started, state_dir)
            rep.warning(f"live stack drifted ({report.reason}); converging again")
            steps.append(f"drift: {report.reason}")
        report, images = _converge(cfg, compose, deadline, rep, timings, steps)
        if not report.healthy:
            result.action = "failed"
        return _finish(result, report, images, timings, steps, started, state_dir)


def _check(ctx, cfg, checkout: Path, deadline: float, started: float) -> SyncResult:
    """Look, change nothing: the checkout's revision and the running stack's health."""
    from gitopsctl.compose import Compose
    from gitopsctl.health import Check

    vm, rep = cfg.targets.vm, ctx.reporter
    head = _git(checkout, "rev-parse", "HEAD")
    tracking = f"refs/remotes/{cfg.git.remote}/{cfg.git.branch}"
    fetched = _git(checkout, "rev-parse", "--verify", "--quiet", f"{tracking}^{{commit}}") \
        if _git_ok(checkout, "rev-parse", "--verify", "--quiet", f"{tracking}^{{commit}}") else None
    local = _git(checkout, "diff", "--name-only", "HEAD").splitlines()
    env_path = _inside(checkout, vm.env_file, "targets.vm.env_file") if vm.sealed_secrets else None
    env_file = env_path if env_path is not None and env_path.is_file() else None
    compose = Compose(project=vm.compose_project,
                      file=_inside(checkout, vm.compose_file, "targets.vm.compose_file"),
                      env_file=env_file, environ=ctx.environ)
    timings: dict[str, float] = {}
    rep.action(f"checking the stack at {head[:12]} (read-only)")
    report, images = _evaluate(cfg, compose, deadline, rep, timings)
    if local:
        # the stack runs files git does not have: it is not "the revision git says"
        report.checks.insert(0, Check("checkout", False, "the checkout has local changes: "
                                      + ", ".join(local[:10])))
        if report.healthy:
            report.healthy, report.reason = False, f"the checkout {checkout} has local changes"
    result = SyncResult(revision=head, previous_revision=head, branch=cfg.git.branch,
                        action="checked", healthy=False,
                        env_file=str(env_file) if env_file else None)
    steps = ["read-only check: nothing fetched, written, pulled or started"]
    if fetched is not None and fetched != head:
        steps.append(f"last fetched {cfg.git.remote}/{cfg.git.branch} is {fetched[:12]}")
    return _finish(result, report, images, timings, steps, started, None)


def _install_units(ctx, directory: Path):
    from gitopsctl import systemd
    from gitopsctl.commands import Message

    written = systemd.write_units(systemd.render_units(ctx.config), directory)
    names = ", ".join(p.name for p in written)
    return Message(f"wrote {names} to {directory}; then: systemctl daemon-reload && "
                   f"systemctl enable --now gitopsctl-sync.timer",
                   data={"units": [str(p) for p in written],
                         "interval_seconds": ctx.config.targets.vm.sync_interval})


# ----------------------------------------------------------------- compose steps

def _converge(cfg, compose, deadline: float, rep, timings: dict, steps: list):
    from gitopsctl.health import Check, HealthReport

    t = time.monotonic()
    rep.action("docker compose pull")
    pulled = compose.pull(timeout=max(1.0, deadline - time.monotonic()))
    timings["pull"] = time.monotonic() - t
    if not pulled.ok:
        reason = f"docker compose pull failed: {_last(pulled.tail())}"
        return HealthReport(target="vm", healthy=False, reason=reason,
                            checks=[Check("pull", False, reason, evidence=pulled.tail())]), {}
    steps.append("pulled")
    t = time.monotonic()
    wait = max(1.0, deadline - time.monotonic())
    rep.action(f"docker compose up -d --wait --wait-timeout {int(round(wait))}")
    up = compose.up(wait)
    timings["up"] = time.monotonic() - t
    steps.append("up" if up.ok else f"up failed (exit {up.returncode})")
    # Even when `up --wait` failed, look at the containers: that names which one,
    # its state, exit code, restarts and logs. The look is fast on a failed stack.
    report, images = _evaluate(cfg, compose, max(deadline, time.monotonic() + 3), rep, timings)
    if not up.ok:
        report.checks.insert(0, Check("compose-up", False,
                                      f"docker compose up exited {up.returncode}: {_last(up.tail())}",
                                      evidence=up.tail()))
        if report.healthy:
            report.healthy = False
            report.reason = f"docker compose up failed: {_last(up.tail())}"
    return report, images


def _evaluate(cfg, compose, deadline: float, rep, timings: dict):
    from gitopsctl import compose as compose_mod
    from gitopsctl.errors import ExternalError as _Ext

    t = time.monotonic()
    services = compose.services()
    import docker
    import docker.errors

    try:
        client = docker.from_env(environment=dict(compose.environ), timeout=60)
        client.ping()
    except docker.errors.DockerException as exc:
        raise _Ext(f"cannot reach the Docker engine: {exc}",
                   hint="is dockerd running, and DOCKER_HOST right for this user?") from None
    try:
        expected = compose_mod.expected_images(client, services)
        with rep.status("waiting for containers to be healthy") as status:
            report = compose_mod.wait_healthy(
                client, compose.project, expected, deadline=deadline,
                samples=cfg.timeouts.healthy_samples, health_url=cfg.targets.vm.health_url,
                http_timeout=cfg.timeouts.http, progress=status.update)
    finally:
        client.close()
    timings["health"] = time.monotonic() - t
    return report, {name: exp.to_dict() for name, exp in expected.items()}


def _finish(result: SyncResult, report, images: dict, timings: dict, steps: list,
            started: float, state_dir: Path | None) -> SyncResult:
    """Fill in the result; record it under state_dir unless that is None (a check)."""
    timings["total"] = time.monotonic() - started
    result.healthy = report.healthy
    result.reason = report.reason
    result.images = images
    report.revision = result.revision
    result.health = report.to_dict()
    result.timings = {k: round(v, 3) for k, v in timings.items()}
    result.steps = steps
    result.finished_at = time.time()
    if state_dir is None:
        return result
    from gitopsctl.redact import redact_obj

    # world-readable, unlike the env file: the container logs in it are redacted like the output
    _atomic_write(state_dir / STATUS_FILE,
                  (json.dumps(redact_obj(result.to_dict()), indent=2) + "\n").encode(), mode=0o644)
    return result


def _last(lines: list[str]) -> str:
    return lines[-1] if lines else "no output"


# ----------------------------------------------------------------- git

def _git(cwd: Path, *args: str) -> str:
    proc = _git_proc(cwd, *args)
    if proc.returncode != 0:
        message = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        raise ExternalError(f"git {args[0]} failed in {cwd}: {message}",
                            details={"command": ["git", *args], "stderr": proc.stderr[-2000:]})
    return proc.stdout.strip()


def _git_ok(cwd: Path, *args: str) -> bool:
    return _git_proc(cwd, *args).returncode == 0


def _git_proc(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    try:
        return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=NETWORK_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise ExternalError(f"git {args[0]} did not finish within {NETWORK_TIMEOUT:.0f}s",
                            hint="check the VM can reach the git remote") from None


def _resolve_target(checkout: Path, tip: str, tracking: str, revision: str | None) -> str:
    if revision is None:
        return tip
    if not _git_ok(checkout, "rev-parse", "--quiet", "--verify", f"{revision}^{{commit}}"):
        raise InputError(f"revision {revision} is not in the fetched history of {tracking}",
                         hint="push the deploy commit first; the VM only runs what is on the branch")
    full = _git(checkout, "rev-parse", "--verify", f"{revision}^{{commit}}")
    if not _git_ok(checkout, "merge-base", "--is-ancestor", full, tip):
        raise InputError(f"revision {full[:12]} is not on {tracking}",
                         hint="the VM only moves along the branch; a rollback is a revert commit on it")
    return full


def _fast_forward(checkout: Path, head: str, target: str, tip: str) -> bool:
    if head == target:
        return False
    tip_contains_head = _git_ok(checkout, "merge-base", "--is-ancestor", head, tip)
    # staged and unstaged edits of tracked files; untracked files survive a fast-forward
    # (git itself refuses if the new commit would overwrite one)
    changes = _git(checkout, "diff", "--name-only", "HEAD")
    if changes:
        files = changes.splitlines()[:10]
        raise UsageError(f"the checkout {checkout} has local changes; refusing to discard them: "
                         + ", ".join(files),
                         hint="the VM follows git: commit the change to the repository instead, "
                              "or inspect it and `git restore` it on the VM")
    if _git_ok(checkout, "merge-base", "--is-ancestor", target, head) and tip_contains_head:
        raise Superseded(f"the checkout is already at {head[:12]}, a newer commit of the branch "
                         f"that contains {target[:12]}; nothing changed",
                         hint="a later deploy reached the VM first (the timer or another pipeline)",
                         details={"live": head, "requested": target})
    if not _git_ok(checkout, "merge-base", "--is-ancestor", head, target):
        raise UsageError(f"moving {checkout} from {head[:12]} to {target[:12]} is not a fast-forward",
                         hint="the checkout has commits the branch does not (or the revision is "
                              "older than what is live); sync never rewinds or discards history")
    _git(checkout, "merge", "--ff-only", "--quiet", target)
    return True


# ----------------------------------------------------------------- secrets

def _inside(checkout: Path, relative: str, key: str) -> Path:
    path = (checkout / relative).resolve()
    if checkout.resolve() not in path.parents:
        raise ConfigError(f"{key}: {relative!r} points outside the checkout {checkout}")
    return path


def _write_env_file(cfg, checkout: Path) -> tuple[Path | None, bool]:
    """Unseal every configured SealedSecret into KEY='value' lines; returns (path, changed)."""
    vm = cfg.targets.vm
    if not vm.sealed_secrets:
        return None, False
    from gitopsctl import sealed

    key_path = Path(vm.unseal_key)
    try:
        keys = sealed.load_private_keys(key_path.read_bytes(), source=str(key_path))
    except OSError as exc:
        raise ConfigError(f"cannot read the VM's sealing key {key_path}: {exc.strerror}",
                          hint="see docs/vm-setup.md: the VM has its own key pair "
                               "(targets.vm.unseal_key)") from None
    values: dict[str, bytes] = {}
    origin: dict[str, str] = {}
    for rel in vm.sealed_secrets:
        path = _inside(checkout, rel, "targets.vm.sealed_secrets")
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read sealed secret {rel}: {exc.strerror}",
                              hint="targets.vm.sealed_secrets lists repo-relative files") from None
        doc = sealed.parse_manifest(text, source=rel, kind=sealed.KIND)
        for name, value in sealed.decrypted_items(doc, keys, source=rel).items():
            if name in values and values[name] != value:
                raise InputError(f"{rel}: key {name} is also set by {origin[name]} with another value",
                                 hint="one env variable, one sealed secret")
            values[name], origin[name] = value, rel
    lines = []
    for name in sorted(values):
        lines.append(_env_line(name, values[name], origin[name]))
    content = "".join(lines).encode("utf-8")
    env_path = _inside(checkout, vm.env_file, "targets.vm.env_file")
    try:
        changed = env_path.read_bytes() != content
    except OSError:
        changed = True
    if changed:
        env_path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(env_path, content, mode=0o600)
    return env_path, changed


def _env_line(name: str, value: bytes, source: str) -> str:
    """KEY='value': single quotes make compose read the value literally (no $ expansion).

    Errors name the key and the file, never the value.
    """
    if not _ENV_KEY_RE.match(name):
        raise InputError(f"{source}: secret key {name!r} is not a valid environment variable name",
                         hint="use letters, digits and _ and do not start with a digit")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{source}: the value of {name} is not UTF-8 text",
                         hint="an env file holds text; mount binary secrets as files instead") from None
    for bad, what in (("\n", "a newline"), ("\r", "a carriage return"), ("\x00", "a NUL byte"),
                      ("'", "a single quote")):
        if bad in text:
            raise InputError(f"{source}: the value of {name} contains {what}, which an env file "
                             "cannot carry literally",
                             hint="seal a value without it (e.g. base64-encode it and decode in "
                                  "the container)")
    return f"{name}='{text}'\n"


# ----------------------------------------------------------------- files and lock

def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    from gitopsctl.fsutil import write_atomic

    write_atomic(path, data, mode)


def _read_status(state_dir: Path) -> dict | None:
    try:
        doc = json.loads((state_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


@contextmanager
def _lock(path: Path, deadline: float, rep) -> Iterator[None]:
    """One sync at a time (timer and CI may overlap); wait with progress until deadline."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_lock(fd):
            with rep.status(f"waiting for the sync lock {path}") as status:
                while not _try_lock(fd):
                    if time.monotonic() >= deadline:
                        raise ExternalError(f"another sync holds {path}; gave up waiting",
                                            hint="a sync from the timer or CI is still running; "
                                                 "retry, or raise --wait-timeout")
                    status.update("another sync is running")
                    time.sleep(0.2)
            rep.success("got the sync lock")
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
