"""One sync of one VM target, on the VM (what `gitopsctl sync` runs).

lock -> git fetch -> fast-forward to origin/<branch> (or the revision asked for, which
must be on that branch) -> unseal secrets into the env file -> docker compose pull +
up --wait -> every service of the target judged by its own checks (composehealth) ->
status recorded under the state dir and returned, per service and overall.

A run at the revision that is already live and healthy is a no-op: nothing is pulled,
nothing is (re)created, and the result says "unchanged". `check` (what `gitopsctl
verify` runs over SSH, `sync --check`) changes nothing at all: no lock, no fetch, no env
file, no compose pull or up, no status file; it reports the revision the checkout stands
on and the stack's health, action "checked".
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitopsctl.agent import status_name, vm_target
from gitopsctl.agent.checkout import inside, move_to, resolve_revision
from gitopsctl.agent.envfile import write_env_file
from gitopsctl.agent.lock import sync_lock
from gitopsctl.agent.stackwatch import UpWatch, open_stack
from gitopsctl.errors import EXIT_OK, ConfigError, ExternalError, UsageError
from gitopsctl.preload import Preload

LOCK_FILE = "sync.lock"
# Needed in this order: the unsealing (cryptography) after git's fetch, the docker SDK
# after pull and up. Imported meanwhile, their half a second is off the deploy's path.
clients = Preload([("sealed", ("gitopsctl.sealed",)), ("docker", ("docker", "docker.errors"))])
EXIT_UNHEALTHY = 1


@dataclass
class SyncResult:
    revision: str
    previous_revision: str | None
    branch: str
    target: str
    action: str                      # "updated" | "unchanged" | "failed" | "checked"
    healthy: bool
    reason: str = ""
    images: dict[str, dict] = field(default_factory=dict)
    health: dict = field(default_factory=dict)          # the whole target's report
    services: list[dict] = field(default_factory=list)  # per service: name, healthy, reason, checks
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
        console.print(f"{mark} sync {self.action}: {self.branch} at {moved} (target {self.target})",
                      markup=False)
        if self.reason:
            console.print(f"  reason: {self.reason}", markup=False)
        for name, image in sorted(self.images.items()):
            console.print(f"  image {name}: {image.get('reference')} "
                          f"({(image.get('digest') or image.get('image_id') or '?')[:19]})", markup=False)
        for service in self.services:
            console.print(f"  service {service['name']}: "
                          f"{'healthy' if service['healthy'] else 'NOT healthy'}", markup=False)
        for check in self.health.get("checks", []):
            console.print(f"  {'ok  ' if check['ok'] else 'FAIL'} {check['name']}: {check['message']}",
                          markup=False)
            if not check["ok"]:
                for line in check.get("evidence", [])[:20]:
                    console.print(f"       {line}", markup=False)
        timing = ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items())
        console.print(f"  timings: {timing}", markup=False)


def run(ctx, name: str, checkout: Path, *, revision: str | None, deadline: float,
        started: float, confirm_target: bool = False) -> SyncResult:
    """Sync VM target `name` to `revision` (None: the branch tip) before `deadline`.

    `confirm_target`: the checkout's config does not name the target; the config of the
    revision asked for must, and is read before the checkout moves.
    """
    from gitopsctl import config as config_mod
    from gitopsctl import repo as gitrepo

    clients.start()
    cfg = ctx.config
    state_dir = checkout / cfg.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    rep = ctx.reporter
    timings: dict[str, float] = {}
    steps: list[str] = []

    # one lock per checkout: two VM targets may share one, and git moves it for both
    with sync_lock(state_dir / LOCK_FILE, deadline, rep):
        timings["lock"] = time.monotonic() - started
        branch, remote = cfg.git.branch, cfg.git.remote
        t = time.monotonic()
        rep.action(f"fetching {remote}/{branch}")
        tip = gitrepo.fetch(checkout, remote, branch)
        timings["fetch"] = time.monotonic() - t
        before = gitrepo.head(checkout)
        wanted = resolve_revision(checkout, tip, f"{remote}/{branch}", revision)
        if confirm_target:
            vm_target(_config_at(ctx, checkout, wanted), name)
        moved = move_to(checkout, before, wanted, tip)
        if moved:
            steps.append(f"fast-forwarded {before[:12]} → {wanted[:12]}")
            rep.success(f"checkout moved {before[:12]} → {wanted[:12]}")
        # the config, compose file and secrets of the revision we now stand on
        cfg = config_mod.load(ctx.config_path, root=checkout, environ=ctx.environ)
        try:
            name, vm = vm_target(cfg, name)
        except UsageError as exc:
            raise ConfigError(f"{cfg.path} at {wanted[:12]}: {exc.message}", hint=exc.hint) from None

        t = time.monotonic()
        clients.wait("sealed")
        env_file, env_changed = write_env_file(vm, name, checkout)
        timings["unseal"] = time.monotonic() - t
        if env_changed:
            steps.append("env file rewritten")

        status_file = state_dir / status_name(cfg, name)
        previous = _read_status(status_file)
        compose = _compose(vm, name, checkout, env_file, ctx.environ)
        result = SyncResult(revision=wanted, previous_revision=(previous or {}).get("revision") or before,
                            branch=branch, target=name, action="updated", healthy=False,
                            env_file=str(env_file) if env_file else None)
        same = (not moved and not env_changed and previous is not None
                and previous.get("revision") == wanted and previous.get("healthy"))
        if same:
            # Already converged last time: look, and only act if it drifted.
            rep.action(f"{wanted[:12]} is already live; checking it is still healthy")
            # a short look: a stack that is not healthy within a few samples gets converged
            look_until = min(deadline, time.monotonic()
                             + 2 * cfg.timeouts.healthy_samples * cfg.timeouts.sample_interval + 10)
            verdict, images = _evaluate(cfg, name, compose, look_until, rep, timings)
            if verdict.report.healthy:
                result.action = "unchanged"
                steps.append("no change: same revision, stack healthy")
                return _finish(result, verdict, images, timings, steps, started, status_file)
            rep.warning(f"live stack drifted ({verdict.report.reason}); converging again")
            steps.append(f"drift: {verdict.report.reason}")
        verdict, images = _converge(cfg, name, compose, deadline, rep, timings, steps)
        if not verdict.report.healthy:
            result.action = "failed"
        return _finish(result, verdict, images, timings, steps, started, status_file)




def _config_at(ctx, checkout: Path, revision: str):
    """The config as of `revision`, read out of git without touching the checkout."""
    import tempfile

    from gitopsctl import config as config_mod
    from gitopsctl import repo as gitrepo

    try:
        relative = Path(ctx.config_path).resolve().relative_to(checkout.resolve()).as_posix()
    except ValueError:  # --config outside the checkout: git has no other version of it
        return ctx.config
    blob = next((f.blob for f in gitrepo.tree_files(checkout, revision, [relative])
                 if f.path == relative), None)
    if blob is None:
        raise ConfigError(f"{relative} does not exist at {revision[:12]}",
                          hint="sync reads the VM target from the config of the revision it runs")
    text = gitrepo.read_blobs(checkout, [blob])[blob]
    with tempfile.TemporaryDirectory(prefix="gitopsctl-config-") as tmp:
        path = Path(tmp) / Path(relative).name
        path.write_bytes(text)
        return config_mod.load(path, root=checkout, environ=ctx.environ)


def _compose(vm, name: str, checkout: Path, env_file: Path | None, environ):
    from gitopsctl.compose import Compose

    return Compose(project=vm.compose_project,
                   file=inside(checkout, vm.compose_file, f"targets.{name}.compose_file"),
                   env_file=env_file, environ=environ)


def check(ctx, name: str, checkout: Path, deadline: float, started: float) -> SyncResult:
    """Look, change nothing: the checkout's revision and the running stack's health."""
    from gitopsctl import repo as gitrepo
    from gitopsctl.health import Check

    cfg, rep = ctx.config, ctx.reporter
    vm = cfg.targets[name]
    head = gitrepo.head(checkout)
    fetched = gitrepo.find_commit(checkout, gitrepo.tracking_ref(cfg.git.remote, cfg.git.branch))
    local = gitrepo.tracked_changes(checkout)
    env_path = inside(checkout, vm.env_file, f"targets.{name}.env_file") if vm.sealed_secrets else None
    env_file = env_path if env_path is not None and env_path.is_file() else None
    compose = _compose(vm, name, checkout, env_file, ctx.environ)
    timings: dict[str, float] = {}
    rep.action(f"checking target {name} at {head[:12]} (read-only)")
    verdict, images = _evaluate(cfg, name, compose, deadline, rep, timings)
    report = verdict.report
    if local:
        # the stack runs files git does not have: it is not "the revision git says"
        report.checks.insert(0, Check("checkout", False, "the checkout has local changes: "
                                      + ", ".join(local[:10])))
        if report.healthy:
            report.healthy, report.reason = False, f"the checkout {checkout} has local changes"
    result = SyncResult(revision=head, previous_revision=head, branch=cfg.git.branch, target=name,
                        action="checked", healthy=False,
                        env_file=str(env_file) if env_file else None)
    steps = ["read-only check: nothing fetched, written, pulled or started"]
    if fetched is not None and fetched != head:
        steps.append(f"last fetched {cfg.git.remote}/{cfg.git.branch} is {fetched[:12]}")
    return _finish(result, verdict, images, timings, steps, started, None)


# ----------------------------------------------------------------- compose steps

def _converge(cfg, name: str, compose, deadline: float, rep, timings: dict, steps: list):
    from gitopsctl.composehealth import TargetVerdict
    from gitopsctl.health import Check, HealthReport

    t = time.monotonic()
    rep.action("docker compose pull")
    # the file's services, read by `compose config` while the images come (errors: read again below)
    reading = threading.Thread(target=_quietly, args=(compose.services,), daemon=True)
    reading.start()
    pulled = compose.pull(timeout=max(1.0, deadline - time.monotonic()))
    reading.join(max(1.0, deadline - time.monotonic()))
    timings["pull"] = time.monotonic() - t
    if not pulled.ok:
        reason = f"docker compose pull failed: {_last(pulled.tail())}"
        report = HealthReport(target=name, healthy=False, reason=reason,
                              checks=[Check("pull", False, reason, evidence=pulled.tail())])
        return TargetVerdict(report, []), {}
    steps.append("pulled")
    stack = open_stack(cfg, name, compose, clients)
    try:
        wait = max(1.0, deadline - time.monotonic())
        rep.action(f"docker compose up -d --wait --wait-timeout {int(round(wait))}")
        up, verdict, images = _up_and_judge(cfg, name, compose, stack, wait, deadline, rep, timings)
        steps.append("up" if up.ok else f"up failed (exit {up.returncode})")
    finally:
        stack.close()
    report = verdict.report
    if not up.ok:
        report.checks.insert(0, Check("compose-up", False,
                                      f"docker compose up exited {up.returncode}: {_last(up.tail())}",
                                      evidence=up.tail()))
        if report.healthy:
            report.healthy = False
            report.reason = f"docker compose up failed: {_last(up.tail())}"
    return verdict, images


def _up_and_judge(cfg, name: str, compose, stack, wait: float, deadline: float, rep, timings: dict):
    """`compose up --wait` on a thread of its own, and the healthy samples as soon as every
    new container is up, or once compose returned (stackwatch.UpWatch says why both)."""
    watch = UpWatch(stack)
    done: dict[str, Any] = {}
    t = time.monotonic()

    def up() -> None:
        try:
            done["up"] = compose.up(wait, stop=watch)
        finally:
            done["at"] = time.monotonic()
            watch.ready.set()  # wakes the wait below whatever happened

    thread = threading.Thread(target=up, name="gitopsctl-compose-up", daemon=True)
    thread.start()
    watch.ready.wait(wait + 70)
    # Even when `up --wait` failed, look at the containers: that names which service,
    # its state, exit code, restarts and logs. The look is fast on a failed stack.
    verdict, images = _evaluate(cfg, name, compose, max(deadline, time.monotonic() + 3), rep,
                                timings, stack)
    if not verdict.report.healthy:
        watch.give_up(f"stopped waiting: {verdict.report.reason}")
    thread.join(wait + 70)  # Compose.run's own timeout ends it before this
    timings["up"] = done.get("at", time.monotonic()) - t
    if "up" not in done:
        raise ExternalError("docker compose up neither finished nor could be stopped")
    return done["up"], verdict, images


def _evaluate(cfg, name: str, compose, deadline: float, rep, timings: dict, stack=None):
    """Judge the stack until healthy, a fatal look or `deadline`; `stack`: already open
    (its client is the caller's to close), else opened and closed here."""
    from gitopsctl import composehealth

    t = time.monotonic()
    own = stack is None
    if own:
        stack = open_stack(cfg, name, compose, clients)
    try:
        with rep.status("waiting for containers to be healthy") as status:
            verdict = composehealth.wait_healthy(
                stack.client, compose.project, stack.expected, stack.rules, deadline=deadline,
                samples=cfg.timeouts.healthy_samples, interval=cfg.timeouts.sample_interval,
                http_timeout=cfg.timeouts.http,
                progress=status.update, target=name)
    finally:
        if own:
            stack.close()
    timings["health"] = time.monotonic() - t
    return verdict, {c: exp.to_dict() for c, exp in stack.expected.items()}


def _finish(result: SyncResult, verdict, images: dict, timings: dict, steps: list,
            started: float, status_file: Path | None) -> SyncResult:
    """Fill in the result; record it in status_file unless that is None (a check)."""
    report = verdict.report
    timings["total"] = time.monotonic() - started
    result.healthy = report.healthy
    result.reason = report.reason
    result.images = images
    report.revision = result.revision
    result.health = report.to_dict()
    result.services = [v.to_dict() for v in verdict.services]
    result.timings = {k: round(v, 3) for k, v in timings.items()}
    result.steps = steps
    result.finished_at = time.time()
    if status_file is None:
        return result
    from gitopsctl.fsutil import write_atomic
    from gitopsctl.redact import redact_obj

    # world-readable, unlike the env file: the container logs in it are redacted like the output
    write_atomic(status_file, (json.dumps(redact_obj(result.to_dict()), indent=2) + "\n").encode(),
                 0o644)
    return result


def _quietly(fn) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - the same call, made again where it is needed, reports it
        pass


def _last(lines: list[str]) -> str:
    return lines[-1] if lines else "no output"


def _read_status(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


