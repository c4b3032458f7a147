"""The options the CLI shares beyond one subcommand, at the click level.

Global options are declared once, on the root (cli.main_options), and copied onto each
subcommand when it is built, so `gitopsctl status -o json` means `gitopsctl -o json status`.
Shell completion's options and --version live here too. Nothing heavier than typer is
imported at module level: completion builds subcommands and must stay cheap.
"""

import copy
import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from typer.core import TyperOption

try:  # typer 0.27 vendors click as typer._click; older typers use click itself
    from typer._click.core import ParameterSource
except ImportError:
    from click.core import ParameterSource

SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")

# Acting on the program rather than on a command, these stay on the root as in any Typer app.
ROOT_ONLY = frozenset({"install_completion", "show_completion"})

# A copy is renamed so it can never share a parameter name (and so a ParameterSource
# entry) with a subcommand's own parameter; only its flags are the user's.
_COPY_PREFIX = "global_option_"
_GIVEN_AFTER = "gitopsctl.global_options_after_subcommand"
_CONTEXT_KEYS = ("config", "repo", "output", "verbose", "no_color")


def global_params(root: typer.core.TyperGroup) -> list:
    return [p for p in root.params if p.name not in ROOT_ONLY]


def _flags(param) -> set[str]:
    return {*param.opts, *param.secondary_opts}


def clashes(command, shared: list) -> list[str]:
    """The global flags a subcommand also declares as its own, sorted."""
    own = set().union(*(_flags(p) for p in command.params)) if command.params else set()
    return sorted(own & set().union(*(_flags(p) for p in shared)))


def inherit(command, shared: list):
    """Give `command` hidden copies of the global options it does not declare itself.

    A flag the subcommand declares keeps the subcommand's meaning; the clash test
    (tests/foundation/test_cli_conventions.py) keeps that from happening unnoticed.
    """
    own = set().union(*(_flags(p) for p in command.params)) if command.params else set()
    copies = []
    for param in shared:
        if _flags(param) & own:
            continue
        twin = copy.copy(param)
        twin.name = _COPY_PREFIX + param.name
        twin.hidden = True
        twin.expose_value = False  # the subcommand's function never sees it: _run reads it
        twin.envvar = None  # the root already read the environment; a copy only adds the argv
        if param.callback is None:
            twin.callback = _remember_given
        copies.append(twin)
    command.params.extend(copies)
    if copies:
        names = ", ".join("/".join(sorted(_flags(p), key=len)) for p in copies
                          if p.name != _COPY_PREFIX + "version")
        note = f"Global options ({names}) work here too, as after `gitopsctl`."
        command.epilog = f"{command.epilog}\n\n{note}" if command.epilog else note
    return command


def _remember_given(ctx, param, value):
    if ctx.get_parameter_source(param.name) is ParameterSource.COMMANDLINE:
        ctx.meta.setdefault(_GIVEN_AFTER, {})[param.name.removeprefix(_COPY_PREFIX)] = value
    return value


def global_options(ctx) -> dict[str, Any]:
    """The global options in effect: the root's (argv, then environment, then default),
    overridden by any given after the subcommand."""
    values = {key: ctx.find_root().params.get(key) for key in _CONTEXT_KEYS}
    values.update(ctx.meta.get(_GIVEN_AFTER, {}))
    return {"config": Path(values["config"]) if values["config"] else None,
            "repo": Path(values["repo"]) if values["repo"] else None,
            "output": str(getattr(values["output"], "value", values["output"]) or "text"),
            "verbose": bool(values["verbose"]), "no_color": bool(values["no_color"])}


def config_location(config: Optional[Path], repo: Optional[Path]) -> tuple[Path, Path]:
    """(repository root, config file) as every command and completion find them."""
    from gitopsctl.config import CONFIG_FILENAME, find_repo_root

    cwd = Path.cwd().resolve()
    repo_root = repo.resolve() if repo else (find_repo_root(cwd) or cwd)
    return repo_root, (config if config else repo_root / CONFIG_FILENAME)


def print_version(ctx: typer.Context, value: bool) -> None:
    # Not eager while -o is: so `--version -o json` sees the output whichever comes first.
    if not value or ctx.resilient_parsing:
        return
    from gitopsctl import buildinfo

    if global_options(ctx)["output"] == "json":
        sys.stdout.write(json.dumps({"version": buildinfo.version(), "commit": buildinfo.commit()})
                         + "\n")
    else:
        typer.echo(buildinfo.describe())
    raise typer.Exit()


class _ShellFlag(TyperOption):
    """Typer's completion flag, which detects the shell, or names it in the next word
    (`--show-completion bash`): typer's vendored click has no optional option values.
    Any next word is taken (no subcommand can follow), so typer refuses `tcsh` itself."""

    def handle_parse_result(self, ctx, opts, args):
        if opts.get(self.name) and args:
            ctx.meta[self.name] = args[0]
            args = args[1:]
        return super().handle_parse_result(ctx, opts, args)


def _completion_callback(typer_callback):
    def callback(ctx, param, value):
        if value and not ctx.resilient_parsing:
            typer_callback(ctx, param, ctx.meta.get(param.name, True))
        return value

    return callback


def completion_options() -> list:
    from typer.completion import completion_init, install_callback, show_callback

    # Registers typer's bash/zsh/fish/powershell classes, which `_GITOPSCTL_COMPLETE=complete_bash`
    # (the protocol typer's scripts speak) needs.
    completion_init()
    shells = ", ".join(SHELLS)
    return [
        _ShellFlag(param_decls=["--install-completion"], is_flag=True, expose_value=False,
                   is_eager=True, callback=_completion_callback(install_callback),
                   help=f"Install completion for the current shell, or the one named next ({shells})."),
        _ShellFlag(param_decls=["--show-completion"], is_flag=True, expose_value=False,
                   is_eager=True, callback=_completion_callback(show_callback),
                   help="Show completion for the current shell, or the one named next, to copy it "
                        "or customize the installation."),
    ]
