"""Glue between the Typer app and the commands: context set-up, rendering, exit codes."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Optional

from gitopsctl.commands import Context
from gitopsctl.console import Reporter, color_enabled, emit_json
from gitopsctl.errors import GitopsctlError


def make_context(*, config: Optional[Path], repo: Optional[Path], output: str, verbose: bool,
                 no_color: bool) -> Context:
    from gitopsctl.config import CONFIG_FILENAME, find_repo_root

    cwd = Path.cwd()
    repo_root = (repo.resolve() if repo else None) or find_repo_root(cwd.resolve()) or cwd.resolve()
    config_path = config if config else repo_root / CONFIG_FILENAME
    reporter = Reporter(verbose=verbose, color=color_enabled(no_color),
                        github_annotations=os.environ.get("GITHUB_ACTIONS") == "true"
                        or os.environ.get("GITEA_ACTIONS") == "true")
    return Context(repo=repo_root, config_path=config_path, output=output, reporter=reporter)


def run_command(ctx: Context, command: str, options: dict[str, Any]) -> None:
    """Run gitopsctl.commands.<command>.<command>(ctx, **options), render, exit."""
    try:
        module = importlib.import_module(f"gitopsctl.commands.{command}")
        result = getattr(module, command)(ctx, **options)
    except GitopsctlError as exc:
        _report_error(ctx, exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a bug: say so plainly, keep the traceback for -v
        if ctx.reporter.verbose:
            traceback.print_exc()
        err = GitopsctlError(f"internal error: {type(exc).__name__}: {exc}",
                             hint="this is a bug in gitopsctl; rerun with -v for the traceback")
        _report_error(ctx, err)
        sys.exit(70)
    render(ctx, result)
    code = getattr(result, "exit_code", 0)
    if code:
        sys.exit(code)


def render(ctx: Context, result: Any) -> None:
    if result is None:
        if ctx.json:
            emit_json({"ok": True})
        return
    if ctx.json:
        doc = result.to_dict()
        doc.setdefault("ok", getattr(result, "exit_code", 0) == 0)
        emit_json(doc)
    else:
        from rich.console import Console

        console = Console(no_color=not ctx.reporter.color, highlight=False, soft_wrap=True)
        result.render_text(console)


def _report_error(ctx: Context, exc: GitopsctlError) -> None:
    rep = ctx.reporter
    rep.failure(str(exc))
    if exc.hint:
        rep.console.print(f"  hint: {exc.hint}", markup=False, highlight=False)
    if ctx.json:
        emit_json({"ok": False, "error": exc.to_dict()})
