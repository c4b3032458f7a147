"""gitopsctl init: propose a gitopsctl.yaml from the repository, confirm, write it atomically."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitopsctl.errors import GitopsctlError, UsageError


@dataclass
class InitResult:
    config: str
    text: str
    discovered: dict
    proposal: dict
    todos: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    written: bool = False
    dry_run: bool = False
    exit_code: int = 0

    def to_dict(self) -> dict:
        return {"config": self.config, "written": self.written, "dry_run": self.dry_run,
                "discovered": self.discovered, "proposal": self.proposal,
                "todos": [t.to_dict() for t in self.todos], "skipped": self.skipped,
                "yaml": self.text}

    def render_text(self, console: Any) -> None:
        if self.dry_run:
            console.print(self.text.rstrip("\n"), markup=False)
            return
        if not self.written:
            console.print(f"nothing written; {self.config} unchanged", markup=False)
            return
        services = self.proposal.get("services", {})
        targets = self.proposal.get("targets", {})
        console.print(f"wrote {self.config}: {len(services)} service(s) "
                      f"({', '.join(services)}) on {len(targets)} target(s) "
                      f"({', '.join(targets)})", markup=False)
        for todo in self.todos:
            console.print(f"  {self.config}:{todo.line}: {todo.key}: {todo.text}", markup=False)
        if self.todos:
            console.print(f"fill the {len(self.todos)} TODO(gitopsctl init) value(s) above, then "
                          "run `gitopsctl config` and `gitopsctl check`", markup=False)
        else:
            console.print("next: `gitopsctl config`, then `gitopsctl check`", markup=False)


def _interactive() -> bool:
    """Ask only a person: stdin and stderr (where the question goes) are terminals."""
    try:
        return sys.stdin is not None and sys.stdin.isatty() and sys.stderr.isatty()
    except (ValueError, OSError):   # closed stdin
        return False


def _refuse_existing(path: Path) -> None:
    if path.exists() or path.is_symlink():
        raise UsageError(f"{path} already exists; gitopsctl init never replaces a config "
                         "unless told to",
                         hint="pass --force to overwrite it, or --dry-run to print the "
                              "proposal without writing")


def init(ctx, *, yes: bool = False, force: bool = False, dry_run: bool = False) -> InitResult:
    from gitopsctl import init as init_pkg
    from gitopsctl.fsutil import write_atomic

    path = Path(ctx.config_path)
    if not force and not dry_run:
        _refuse_existing(path)
    ctx.reporter.action(f"reading {ctx.repo}")
    plan = init_pkg.plan(Path(ctx.repo))
    result = InitResult(str(path), plan.text, plan.discovery.to_dict(), plan.proposal.document,
                        plan.todos, plan.proposal.skipped, dry_run=dry_run)
    for skipped in plan.proposal.skipped:
        ctx.reporter.warning(skipped)
    if dry_run:
        return result
    if not yes and _interactive() and not _confirmed(ctx, plan, path):
        result.exit_code = 1
        return result
    # a config that appeared while the question was open is not replaced either
    try:
        write_atomic(path, plan.text,
                     before_replace=None if force else lambda: _refuse_existing(path))
    except OSError as exc:
        raise GitopsctlError(f"cannot write {path}: {exc.strerror or exc}",
                             hint="check that the directory exists and is writable, or pass "
                                  "--config PATH; nothing was written") from None
    result.written = True
    return result


def _confirmed(ctx, plan, path: Path) -> bool:
    import typer

    console = ctx.reporter.console
    console.print(plan.text.rstrip("\n"), markup=False, highlight=False)
    console.print(f"\n{len(plan.todos)} value(s) marked TODO(gitopsctl init) to fill in after.",
                  markup=False, highlight=False)
    try:
        return typer.confirm(f"Write {path}?", default=True, err=True)
    except (typer.Abort, EOFError):
        return False
