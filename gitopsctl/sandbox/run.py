"""The sandbox command: demo, up and down of the whole homelab on this machine.

demo  starts the lab in a fresh directory, plays three pipelines (a good commit, a
      frontend that crashes, a backend that fails its health check), prints the git
      audit trail and `gitopsctl status`, and removes everything it started.
up    starts the lab and stays in the foreground (the Kubernetes emulator runs in this
      process) until Ctrl-C or SIGTERM, then removes everything.
down  stops a running `sandbox up` through the state file it wrote, and waits for it.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitopsctl.errors import EXIT_OK, EXIT_ROLLED_BACK, ExternalError, UsageError
from gitopsctl.sandbox import leftovers as lab_leftovers
from gitopsctl.sandbox import session
from gitopsctl.sandbox import state as sandbox_state

DEFAULT_STAGE_DELAY = 5.0
DEFAULT_DOWN_TIMEOUT = 120.0


def sandbox(ctx, *, action: str, workdir: Path | None = None, keep: bool = False,
            stage_delay: float = DEFAULT_STAGE_DELAY, timeout: float = DEFAULT_DOWN_TIMEOUT):
    if stage_delay < 0:
        raise UsageError(f"--stage-delay must not be negative (got {stage_delay})",
                         hint="0 skips the delay; the sandbox default is 5 seconds")
    if action == "demo":
        return demo(ctx, workdir=workdir, keep=keep, stage_delay=stage_delay)
    if action == "up":
        return up(ctx, workdir=workdir, keep=keep, stage_delay=stage_delay)
    if action == "down":
        return down(ctx, workdir=workdir, timeout=timeout)
    raise UsageError(f"unknown sandbox action {action!r}", hint="use demo, up or down")


# ------------------------------------------------------------------ shared pieces

class _Narrator:
    """The story's progress in the Reporter's voice; child CLI lines indented beneath."""

    def __init__(self, reporter: Any):
        self.reporter = reporter

    def action(self, message: str) -> None:
        self.reporter.action(message)

    def success(self, message: str) -> None:
        self.reporter.success(message)

    def failure(self, message: str) -> None:
        self.reporter.failure(message)

    def relay(self, line: str) -> None:
        from gitopsctl.console import NullReporter

        if isinstance(self.reporter, NullReporter):
            return
        from rich.text import Text

        self.reporter.console.print(Text(f"    │ {line}", style="dim"))


def _new_lab(ctx, workdir: Path, stage_delay: float):
    from gitopsctl.sandbox.lab.lab import Lab, LabSettings

    rep = ctx.reporter
    t0 = time.monotonic()
    return Lab(workdir, settings=LabSettings(stage_delay=stage_delay),
               progress=lambda message: rep.action(f"[{time.monotonic() - t0:5.1f}s] {message}"))


def _start_lab(ctx, lab) -> float:
    """Start every service (Lab.start stops what it started if it fails); returns seconds."""
    rep = ctx.reporter
    t0 = time.monotonic()
    rep.action(f"starting the sandbox in {lab.workdir}")
    lab.start()
    engine = "this machine's Docker engine" if not lab.engine.owned else "a private Docker engine"
    rep.success(f"sandbox up in {time.monotonic() - t0:.1f}s on {engine}: "
                f"frontend {lab.frontend_url}, backend {lab.backend_url}")
    return round(time.monotonic() - t0, 3)


@dataclass
class Cleanup:
    seconds: float = 0.0
    workdir_removed: bool = False
    images_removed: int = 0
    leftovers: list[str] = field(default_factory=list)
    footprint: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"seconds": self.seconds, "workdir_removed": self.workdir_removed,
                "images_removed": self.images_removed, "leftovers": self.leftovers,
                "checked": self.footprint}


def _say(report, message: str) -> None:
    """Progress during clean-up; a terminal that went away (SIGHUP) must not stop clean-up."""
    try:
        report(message)
    except OSError:
        pass


def _clean_up(ctx, lab, workdir: Path, created: bool, keep: bool) -> Cleanup:
    """Stop every service, delete what was made, then prove nothing is left."""
    rep = ctx.reporter
    t0 = time.monotonic()
    result = Cleanup()
    with session.shielded(lambda message: _say(rep.warning, message)):
        _say(rep.action, "cleaning up: containers, VM, registry, cluster, Docker engine, files")
        footprint = lab_leftovers.Footprint.of(lab)
        result.footprint = footprint.to_dict()
        lab.stop()
        result.images_removed = lab_leftovers.remove_lab_images(footprint)
        if not keep:
            session.remove_workdir(workdir, created)
            result.workdir_removed = not workdir.exists() or not any(workdir.iterdir())
        result.leftovers = lab_leftovers.find_leftovers(footprint, workdir_kept=keep)
    result.seconds = round(time.monotonic() - t0, 3)
    if result.leftovers:
        _say(rep.failure, "clean-up left things behind: " + "; ".join(result.leftovers))
    else:
        _say(rep.success, f"cleaned up in {result.seconds:.1f}s; nothing left running"
             + (f" (files kept in {workdir})" if keep else ""))
    return result


# ------------------------------------------------------------------ demo

@dataclass
class DemoResult:
    workdir: str
    engine: str = ""
    scenarios: list = field(default_factory=list)
    log: list[dict] = field(default_factory=list)
    status: dict | None = None
    status_text: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    cleanup: Cleanup | None = None
    exit_code: int = EXIT_OK

    @property
    def all_ok(self) -> bool:
        return bool(self.scenarios) and all(s.ok for s in self.scenarios)

    def to_dict(self) -> dict:
        return {"ok": self.exit_code == EXIT_OK, "workdir": self.workdir, "engine": self.engine,
                "scenarios": [s.to_dict() for s in self.scenarios], "log": self.log,
                "status": self.status, "timings": self.timings,
                "cleanup": self.cleanup.to_dict() if self.cleanup else None,
                "exit_code": self.exit_code}

    def render_text(self, console: Any) -> None:
        from rich import box
        from rich.table import Table

        # fits 80 columns (a pipe or a CI log); `expected` is in the JSON and in "ok"
        table = Table(title="sandbox demo", title_justify="left", box=box.SIMPLE_HEAD)
        for column in ("scenario", "outcome", "source", "build", "stage", "rollback", "result"):
            table.add_column(column, no_wrap=True)
        for s in self.scenarios:
            t = s.timings
            table.add_row(s.scenario.name, s.outcome, s.source[:7] or "-",
                          _secs(t.get("build")), _secs(t.get("stage")), _secs(t.get("rollback")),
                          "[green]ok[/green]" if s.ok else f"[red]FAILED[/red] (expected {s.scenario.expected})")
        console.print(table)
        for s in self.scenarios:
            for check in s.checks:
                if not check.ok:
                    console.print(f"  {s.scenario.name}: {check.name}: {check.detail}", markup=False)
            if s.error:
                console.print(f"  {s.scenario.name}: {s.error}", markup=False)
        console.print("\naudit trail (git log of the homelab remote, newest first):")
        for entry in self.log:
            console.print(f"  {entry['commit'][:7]}  {entry['subject']}", markup=False)
            if entry.get("reason"):
                console.print(f"           Reason: {entry['reason']}", markup=False)
        if self.status_text:
            console.print("\n$ gitopsctl status")
            console.print(self.status_text.rstrip(), markup=False, highlight=False)
        console.print("")
        if self.cleanup is not None:
            left = self.cleanup.leftovers
            console.print(("cleaned up: nothing left running" if not left else
                           f"clean-up left {len(left)} thing(s) behind") + f" ({self.cleanup.seconds:.1f}s)",
                          markup=False)
        verdict = "every scenario ended as it should" if self.all_ok else "some scenarios did NOT end as they should"
        console.print(f"{verdict}; total {self.timings.get('total', 0):.0f}s", markup=False)


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def demo(ctx, *, workdir: Path | None, keep: bool, stage_delay: float) -> DemoResult:
    from gitopsctl.sandbox import story

    session.require_tools()
    rep = ctx.reporter
    path, created = session.prepare_workdir(workdir)
    result = DemoResult(workdir=str(path))
    t0 = time.monotonic()
    lab = _new_lab(ctx, path, stage_delay)
    try:
        with session.interrupts_as_keyboard_interrupt():
            try:
                result.timings["start"] = _start_lab(ctx, lab)
                result.engine = "private" if lab.engine.owned else lab.engine.docker_host
                narrator = _Narrator(rep)
                for number, scenario in enumerate(story.SCENARIOS, 1):
                    rep.action(f"scenario {number}/{len(story.SCENARIOS)} {scenario.name}: {scenario.title}")
                    outcome = story.play(lab, scenario, narrator)
                    result.scenarios.append(outcome)
                    _tell(rep, outcome)
                _epilogue(ctx, lab, result)
            finally:
                result.cleanup = _clean_up(ctx, lab, path, created, keep)
    except KeyboardInterrupt:
        rep.failure("interrupted: the sandbox was stopped and removed")
        raise
    result.timings["total"] = round(time.monotonic() - t0, 3)
    clean = result.cleanup is not None and not result.cleanup.leftovers
    result.exit_code = EXIT_OK if result.all_ok and clean else EXIT_ROLLED_BACK
    return result


def _tell(rep, outcome) -> None:
    name = outcome.scenario.name
    if outcome.ok:
        rep.success(f"{name}: {outcome.outcome} as expected"
                    + (f" — Reason: {outcome.reason}" if outcome.reason else ""))
        return
    failed = [f"{c.name} ({c.detail})" for c in outcome.checks if not c.ok]
    rep.failure(f"{name}: expected {outcome.scenario.expected}, got {outcome.outcome}"
                + (f"; {outcome.error}" if outcome.error else "")
                + (f"; failed checks: {'; '.join(failed)}" if failed else ""))


def _epilogue(ctx, lab, result: DemoResult) -> None:
    """The audit trail from git and what `gitopsctl status` says, while the lab still runs."""
    from gitopsctl.sandbox.audit import audit_trail
    from gitopsctl.sandbox.pipeline import run_cli

    result.log = audit_trail(lab.remote.bare, lab.remote.branch)
    if ctx.json:
        status = run_cli(["status"], cwd=lab.ci, env=lab.ci_env())
        result.status = status.document
    else:
        run = lab.gitopsctl("status", env={**lab.ci_env(), "COLUMNS": str(_status_width())}, timeout=120)
        result.status_text = run.stdout or run.stderr


def _status_width() -> int:
    """The status tables are printed on stdout: as wide as its terminal, else 120 for a log."""
    import shutil

    return shutil.get_terminal_size((120, 24)).columns if os.isatty(1) else 120


# ------------------------------------------------------------------ up

@dataclass
class UpResult:
    workdir: str
    state: dict = field(default_factory=dict)
    uptime: float = 0.0
    cleanup: Cleanup | None = None
    exit_code: int = EXIT_OK

    def to_dict(self) -> dict:
        return {"workdir": self.workdir, "state": self.state, "uptime_seconds": round(self.uptime, 3),
                "cleanup": self.cleanup.to_dict() if self.cleanup else None, "exit_code": self.exit_code}

    def render_text(self, console: Any) -> None:
        left = self.cleanup.leftovers if self.cleanup else []
        console.print(f"sandbox stopped after {self.uptime:.0f}s; "
                      + ("nothing left running" if not left else f"{len(left)} thing(s) left behind"),
                      markup=False)


def up(ctx, *, workdir: Path | None, keep: bool, stage_delay: float) -> UpResult:
    session.require_tools()
    rep = ctx.reporter
    path, created = session.prepare_workdir(workdir)
    result = UpResult(workdir=str(path))
    lab = _new_lab(ctx, path, stage_delay)
    ready_at = None
    try:
        with session.interrupts_as_keyboard_interrupt():
            try:
                _start_lab(ctx, lab)
                result.state = _ready_state(lab, path, created, keep)
                sandbox_state.write_state(path, result.state, dict(ctx.environ))
                _explain(rep, result.state)
                ready_at = time.monotonic()
                while True:  # the emulator's threads serve the cluster; this one just waits
                    time.sleep(3600)
            finally:
                if ready_at is not None:
                    result.uptime = time.monotonic() - ready_at
                    _say(rep.action, "stopping the sandbox")
                sandbox_state.clear_state(path, dict(ctx.environ))
                result.cleanup = _clean_up(ctx, lab, path, created, keep)
    except KeyboardInterrupt:
        if ready_at is None:
            rep.failure("interrupted before the sandbox was ready; everything was removed")
            raise
    if result.cleanup and result.cleanup.leftovers:
        result.exit_code = EXIT_ROLLED_BACK
    return result


def _ready_state(lab, path: Path, created: bool, keep: bool) -> dict:
    env_file = path / sandbox_state.ENV_FILE
    env = lab.ci_env()
    wanted = ("DOCKER_HOST", "DOCKER_CONFIG", "KUBECONFIG", "HARBOR_USERNAME", "HARBOR_PASSWORD")
    # The registry password lives only in this 0600 file; it is never printed.
    lines = [f"export {key}={shlex.quote(env[key])}" for key in wanted if key in env]
    # gitopsctl, kubectl and docker-compose from the same installation as this sandbox
    lines.append(f'export PATH={shlex.quote(str(Path(sys.executable).parent))}:"$PATH"')
    sandbox_state.write_atomic(env_file, "# source this file to use the sandbox from a shell\n"
                         + "\n".join(lines) + "\n", mode=0o600)
    return {"pid": os.getpid(), "started_at": int(time.time()), "workdir": str(path),
            "created_workdir": created, "keep": keep, "ci_clone": str(lab.ci), "developer_clone": str(lab.remote.work),
            "vm_checkout": str(lab.vm_checkout), "remote": lab.remote.url,
            "frontend_url": lab.frontend_url, "backend_url": lab.backend_url,
            "registry": lab.registry.url, "kubeconfig": str(lab.workdir / "kube" / "kubeconfig"),
            "env_file": str(env_file), "docker_host": lab.engine.docker_host,
            "footprint": lab_leftovers.Footprint.of(lab).to_dict()}


def _explain(rep, state: dict) -> None:
    q = shlex.quote
    lines = [
        "",
        "The sandbox is running. It stays in the foreground because the Kubernetes API",
        "emulator runs inside this process; Ctrl-C here (or `gitopsctl sandbox down"
        f" --dir {q(state['workdir'])}` elsewhere) stops it and removes everything.",
        "",
        f"  frontend   {state['frontend_url']}   (Kubernetes, reconciled by the Flux emulator)",
        f"  backend    {state['backend_url']}   (docker compose on the VM at 127.0.0.2)",
        f"  registry   {state['registry']}",
        f"  git remote {state['remote']}",
        "",
        "Explore it from another terminal, in the CI clone:",
        f"  cd {q(state['ci_clone'])}",
        f"  source {q(state['env_file'])}      # PATH, KUBECONFIG, DOCKER_HOST, registry login",
        "  gitopsctl status",
        "",
        "Break the frontend and watch the pipeline roll it back:",
        "  echo crash > examples/frontend/fail-mode",
        "  git commit -qam 'frontend: break it' && git push -q origin HEAD:main",
        "  gitopsctl build && gitopsctl stage",
        "  git log --format='%h %s' -5",
        "(examples/backend/fail-mode with `unhealthy` breaks the backend instead.)",
        "",
    ]
    console = rep.console
    for line in lines:
        console.print(line, markup=False, highlight=False)


# ------------------------------------------------------------------ down

@dataclass
class DownResult:
    workdir: str
    pid: int
    was_running: bool
    seconds: float = 0.0
    leftovers: list[str] = field(default_factory=list)
    exit_code: int = EXIT_OK

    def to_dict(self) -> dict:
        return {"workdir": self.workdir, "pid": self.pid, "was_running": self.was_running,
                "seconds": round(self.seconds, 3), "leftovers": self.leftovers, "exit_code": self.exit_code}

    def render_text(self, console: Any) -> None:
        what = "stopped" if self.was_running else "was not running; cleaned up what it left"
        console.print(f"sandbox {self.pid} {what} in {self.seconds:.1f}s; "
                      + ("nothing left running" if not self.leftovers else
                         f"left behind: {'; '.join(self.leftovers)}"), markup=False)


def down(ctx, *, workdir: Path | None, timeout: float) -> DownResult:
    rep = ctx.reporter
    state_path, state = sandbox_state.find_state(workdir, dict(ctx.environ))
    pid = int(state["pid"])
    footprint = lab_leftovers.Footprint.from_dict(state["footprint"]) if state.get("footprint") else None
    t0 = time.monotonic()
    result = DownResult(workdir=str(state_path.parent), pid=pid,
                        was_running=sandbox_state.is_sandbox_process(pid))
    if result.was_running:
        rep.action(f"stopping the sandbox (pid {pid}); it removes its containers and services")
        stopped = sandbox_state.stop_process(
            pid, timeout, lambda elapsed: rep.waiting(f"waiting for pid {pid} to clean up ({elapsed:.0f}s)"))
        if not stopped:
            raise ExternalError(f"the sandbox (pid {pid}) did not stop within {timeout:.0f}s",
                                hint=f"see its terminal; `kill -KILL {pid}` and then "
                                     f"`gitopsctl sandbox down --dir {state_path.parent}` removes what it left")
    else:
        rep.warning(f"pid {pid} is not running; removing what it left behind")
        if footprint is not None:
            lab_leftovers.reap(footprint, bool(state.get("created_workdir")))
        sandbox_state.clear_state(state_path.parent, dict(ctx.environ))
    if footprint is not None:
        result.leftovers = lab_leftovers.find_leftovers(footprint, workdir_kept=bool(state.get("keep")))
    result.seconds = time.monotonic() - t0
    if result.leftovers:
        result.exit_code = EXIT_ROLLED_BACK
        rep.failure("left behind: " + "; ".join(result.leftovers))
    else:
        rep.success(f"sandbox stopped in {result.seconds:.1f}s; nothing left running")
    return result
