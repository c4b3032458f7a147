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
from gitopsctl.errors import EXIT_INTERNAL, GitopsctlError
from gitopsctl.redact import RedactingFile

# The one command whose product is a secret, asked for with the private key in hand:
# its result is printed as is (its progress and errors are still redacted).
_REVEALS_SECRETS = frozenset({"unseal"})


def make_context(*, config: Optional[Path], repo: Optional[Path], output: str, verbose: bool,
                 no_color: bool) -> Context:
    from gitopsctl.cliglobals import config_location

    repo_root, config_path = config_location(config, repo)
    reporter = Reporter(verbose=verbose, color=color_enabled(no_color),
                        github_annotations=os.environ.get("GITHUB_ACTIONS") == "true"
                        or os.environ.get("GITEA_ACTIONS") == "true")
    return Context(repo=repo_root, config_path=config_path, output=output, reporter=reporter)


def run_command(ctx: Context, command: str, options: dict[str, Any],
                durations: dict[str, tuple[str, str]] | None = None) -> None:
    """Run gitopsctl.commands.<command>.<command>(ctx, **options), render, exit.

    `durations` maps an option's parameter to (its flag, the config key whose range it
    shares); each given value is parsed and range-checked before the command runs.
    """
    try:
        options = {**options, **_checked_durations(options, durations or {})}
        module = importlib.import_module(f"gitopsctl.commands.{command}")
        result = getattr(module, command)(ctx, **options)
    except GitopsctlError as exc:
        _report_error(ctx, exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a bug: say so plainly, keep the traceback for -v
        if ctx.reporter.verbose:
            traceback.print_exc(file=RedactingFile(lambda: sys.stderr))
        err = GitopsctlError(f"internal error: {type(exc).__name__}: {exc}",
                             hint="this is a bug in gitopsctl; rerun with -v for the traceback")
        err.exit_code = EXIT_INTERNAL  # the JSON document says the code the process exits with
        _report_error(ctx, err)
        sys.exit(EXIT_INTERNAL)
    render(ctx, result, redacted=command not in _REVEALS_SECRETS)
    code = getattr(result, "exit_code", 0)
    if code:
        sys.exit(code)


def _checked_durations(options: dict[str, Any], durations: dict[str, tuple[str, str]]) -> dict:
    from gitopsctl.config import duration_option

    return {name: duration_option(flag, options[name], key)
            for name, (flag, key) in durations.items() if options.get(name) is not None}


def render(ctx: Context, result: Any, *, redacted: bool = True) -> None:
    if result is None:
        if ctx.json:
            emit_json({"ok": True})
        return
    if ctx.json:
        doc = result.to_dict()
        # one meaning in every command: ok is exactly "the exit code is 0"
        doc["ok"] = getattr(result, "exit_code", 0) == 0
        emit_json(doc, redacted=redacted)
    else:
        from rich.console import Console

        out = RedactingFile(lambda: sys.stdout) if redacted else sys.stdout
        console = Console(file=out, no_color=not ctx.reporter.color, highlight=False, soft_wrap=True)
        result.render_text(console)


def _report_error(ctx: Context, exc: GitopsctlError) -> None:
    rep = ctx.reporter
    rep.failure(str(exc))
    if exc.hint:
        rep.console.print(f"  hint: {exc.hint}", markup=False, highlight=False)
    if ctx.json:
        emit_json({"ok": False, "error": exc.to_dict()})
