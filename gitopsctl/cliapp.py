"""The Typer app: global options and one thin function per subcommand.

The console script enters through gitopsctl.cli, which answers a cached `--help` before
this module (and so typer) is imported; everything else runs `app` from here.
Command implementations live in gitopsctl.commands.<name> and are imported only
when their subcommand runs, so `gitopsctl --help` never loads kubernetes, docker
or fabric.

No `from __future__ import annotations` here: typer would have to eval every
annotation string when it builds a command, which costs more than defining them.
"""

from enum import Enum
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from typer.core import TyperGroup


# Subcommands are registered on `commands` and turned into click commands one at a
# time, on demand: `gitopsctl --help` and `gitopsctl bump` never pay for building
# the other ten from their signatures.
commands = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False)


class _LazyGroup(TyperGroup):
    def __init__(self, *args, **kwargs) -> None:
        from gitopsctl.cliglobals import completion_options

        super().__init__(*args, **kwargs)
        self.params.extend(completion_options())

    def list_commands(self, ctx) -> list[str]:
        return [_name(info) for info in commands.registered_commands]

    def get_command(self, ctx, cmd_name: str):
        from gitopsctl.cliglobals import global_params, inherit

        info = _info(cmd_name)
        return inherit(_build(info), global_params(self)) if info else None

    def format_commands(self, ctx, formatter) -> None:
        try:  # typer >= 0.28 vendors click
            from typer._click.utils import make_default_short_help
        except ImportError:
            from click.utils import make_default_short_help

        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = [(_name(info), make_default_short_help(_summary(info), limit))
                for info in commands.registered_commands]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _info(cmd_name: str):
    return next((info for info in commands.registered_commands if _name(info) == cmd_name), None)


def _build(info):
    import typer.main

    return typer.main.get_command_from_info(info, pretty_exceptions_short=True, rich_markup_mode=None)


def global_option_clashes() -> dict[str, list[str]]:
    """Per subcommand, the global flags it also declares itself (there, its own meaning wins).

    Checked by a test rather than at start-up, which would build every subcommand."""
    from gitopsctl.cliglobals import clashes, global_params

    root = typer.main.get_command(app)
    found = {_name(info): clashes(_build(info), global_params(root))
             for info in commands.registered_commands}
    return {name: flags for name, flags in found.items() if flags}


def _name(info) -> str:
    return info.name or info.callback.__name__.replace("_", "-")


def _summary(info) -> str:
    doc = info.help or info.callback.__doc__ or ""
    return doc.strip().split("\n\n")[0].replace("\n", " ")


app = typer.Typer(
    cls=_LazyGroup,
    name="gitopsctl",
    help="A homelab git repository that deploys itself and heals itself.\n\n"
         "Exit codes: 0 ok; 1 failed (deploy rolled back, or check found problems); "
         "2 usage/config/input error; 3 rollback failed, a human must act; 4 superseded; "
         "5 suspended (deploys paused).",
    no_args_is_help=True,
    # typer's own completion options detect the shell only; _LazyGroup adds ones that also
    # take its name (`--show-completion bash`)
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Output(str, Enum):
    text = "text"
    json = "json"


def _config_names(section: str):
    """Shell completion of the names gitopsctl.yaml gives its services or targets."""

    def complete(ctx: typer.Context, incomplete: str) -> list[str]:
        from gitopsctl import config as cfg
        from gitopsctl.cliglobals import config_location, global_options

        try:
            given = global_options(ctx)
            root, path = config_location(given["config"], given["repo"])
            loaded = cfg.load(path, root=root)
        except Exception:  # noqa: BLE001 - completion must never print a traceback into a shell
            return []
        names = list(getattr(loaded, section)) + (["all"] if section == "services" else [])
        return [n for n in names if n.startswith(incomplete)]

    return complete


class Scope(str, Enum):
    strict = "strict"
    namespace_wide = "namespace-wide"
    cluster_wide = "cluster-wide"


def _version(ctx: typer.Context, value: bool) -> None:
    from gitopsctl.cliglobals import print_version

    print_version(ctx, value)


# Every option here is accepted after the subcommand too (cliglobals.inherit), and the
# commands read them through cliglobals.global_options, not from this function's arguments.
@app.callback()
def main_options(
    config: Annotated[Optional[Path], typer.Option(
        "--config", envvar="GITOPSCTL_CONFIG", metavar="PATH",
        help="Config file [default: gitopsctl.yaml at the root of the git repository]")] = None,
    repo: Annotated[Optional[Path], typer.Option(
        "--repo", envvar="GITOPSCTL_REPO", metavar="PATH",
        help="The homelab git repository [default: the one containing the current directory]")] = None,
    output: Annotated[Output, typer.Option(
        # eager, and --version not: `--version -o json` then prints JSON in either order
        "--output", "-o", envvar="GITOPSCTL_OUTPUT", is_eager=True,
        help="text for people; json prints exactly one JSON document on stdout")] = Output.text,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", envvar="GITOPSCTL_VERBOSE",
                                          help="Show debug detail on stderr")] = False,
    no_color: Annotated[bool, typer.Option("--no-color", envvar="GITOPSCTL_NO_COLOR",
                                           help="Plain output (NO_COLOR is honoured too)")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version,
                                          help="Print the version and commit, and exit")] = False,
) -> None:
    """Nothing to do yet: _run builds the Context once the subcommand has parsed its argv."""


def _run(ctx: typer.Context, command: str, durations=None, **options) -> None:
    from gitopsctl.cliglobals import global_options
    from gitopsctl.cliutil import make_context, run_command

    run_command(make_context(**global_options(ctx)), command, options, durations)


# Duration options are read as text and checked by config.duration_option against the
# range of the config key they override, so `nan`, `inf`, `-5` or `0` never reach a wait.
_DURATION_HELP = " (seconds, or like 90s, 5m)"


def _services(values: Optional[List[str]]) -> list[str]:
    return list(values) if values else ["all"]


@commands.command()
def build(
    ctx: typer.Context,
    source: Annotated[Optional[str], typer.Option(
        metavar="SHA", help="App commit to build [default: HEAD]")] = None,
    service: Annotated[Optional[List[str]], typer.Option(
        metavar="NAME", autocompletion=_config_names("services"),
        help="Service (a name under services: in gitopsctl.yaml) to build; repeat for several "
             "[default: all]")] = None,
    no_push: Annotated[bool, typer.Option("--no-push", help="Build and tag only")] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not use the build cache")] = False,
) -> None:
    """Build every service's image (or those named) for a commit and push them to the registry."""
    _run(ctx, "build", source=source, services=_services(service), push=not no_push,
         no_cache=no_cache)


@commands.command()
def bump(
    ctx: typer.Context,
    path: Annotated[Optional[List[Path]], typer.Option(
        metavar="DIR", help="Edit setter markers under DIR (repeatable)")] = None,
    policy: Annotated[Optional[List[str]], typer.Option(
        metavar="NAMESPACE:NAME=IMAGE_REF", help="New value for an ImagePolicy (repeatable)")] = None,
    service: Annotated[Optional[List[str]], typer.Option(
        metavar="NAME", autocompletion=_config_names("services"),
        help="Pipeline mode: bump this service's markers to the image built from --source "
             "(build record, else the registry)")] = None,
    source: Annotated[Optional[str], typer.Option(
        metavar="SHA", help="Pipeline mode: the app commit that was built [default: HEAD]")] = None,
    no_commit: Annotated[bool, typer.Option("--no-commit", help="Edit files, do not commit or push")] = False,
    no_push: Annotated[bool, typer.Option("--no-push", help="Commit but do not push")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the changes, write nothing")] = False,
    allow_unbuilt: Annotated[bool, typer.Option(
        "--allow-unbuilt", help="Pipeline mode: deploy <repository>:<sha7> even though no build "
                                "recorded it and the registry does not have it")] = False,
) -> None:
    """Edit image references at Flux setter markers (and the compose file), commit and push."""
    _run(ctx, "bump", paths=path or [], policies=policy or [],
         services=list(service or []), source=source,
         commit=not no_commit and not dry_run, push=not no_push, dry_run=dry_run,
         allow_unbuilt=allow_unbuilt)


@commands.command()
def stage(
    ctx: typer.Context,
    source: Annotated[Optional[str], typer.Option(
        metavar="SHA", help="App commit whose build to deploy [default: HEAD]")] = None,
    delay: Annotated[Optional[str], typer.Option(
        metavar="SECONDS", help="Override stage.delay between stage groups"
                                + _DURATION_HELP)] = None,
    timeout: Annotated[Optional[str], typer.Option(
        metavar="SECONDS", help="Override timeouts.failure for each target" + _DURATION_HELP)] = None,
    allow_unbuilt: Annotated[bool, typer.Option(
        "--allow-unbuilt", help="Deploy <repository>:<sha7> even when no build record or registry "
                                "tag shows it was built")] = False,
) -> None:
    """Deploy the services group by group (stage.order), each group healthy before the next;
    roll every service back on any failure."""
    _run(ctx, "stage", source=source, delay=delay, timeout=timeout, allow_unbuilt=allow_unbuilt,
         durations={"delay": ("--delay", "stage.delay"), "timeout": ("--timeout", "timeouts.failure")})


@commands.command()
def verify(
    ctx: typer.Context,
    services: Annotated[Optional[List[str]], typer.Argument(
        metavar="[SERVICE]...", autocompletion=_config_names("services"),
        help="Services to check [default: all]")] = None,
    target: Annotated[Optional[List[str]], typer.Option(
        metavar="NAME", autocompletion=_config_names("targets"),
        help="Check the services of this target (a name under targets:); repeatable")] = None,
    timeout: Annotated[Optional[str], typer.Option(
        metavar="SECONDS", help="Deadline for each target" + _DURATION_HELP
                                + " [default: timeouts.failure]")] = None,
) -> None:
    """Check, without changing anything, that each target runs and serves what git says is live."""
    _run(ctx, "verify", services=list(services or []), targets=list(target or []), timeout=timeout,
         durations={"timeout": ("--timeout", "timeouts.failure")})


@commands.command()
def rollback(
    ctx: typer.Context,
    to: Annotated[Optional[str], typer.Option(
        "--to", metavar="SOURCE_SHA", help="Return to the deploy of this source commit")] = None,
    source: Annotated[Optional[str], typer.Option(
        metavar="SHA", help="Roll back the deploy of this source [default: the latest deploy]")] = None,
    reason: Annotated[Optional[str], typer.Option(
        help="Why, recorded in the revert commit [default: manual rollback]")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="List the commits that would be reverted and the images that would go live")] = False,
    no_verify: Annotated[bool, typer.Option(
        "--no-verify", help="Push the revert but skip re-reconcile and health verification")] = False,
) -> None:
    """Revert the latest deploy of every service in one commit and verify the old version."""
    _run(ctx, "rollback", to=to, source=source, reason=reason, dry_run=dry_run,
         verify=not no_verify)


@commands.command()
def check(
    ctx: typer.Context,
    paths: Annotated[Optional[List[Path]], typer.Argument(
        help="Files or directories to check; those outside the scope are skipped [default: what "
             "gitopsctl.yaml names; without one, every YAML file git sees]")] = None,
) -> None:
    """Validate the repository offline (pre-commit hook): YAML, kustomize, secrets, markers."""
    _run(ctx, "check", paths=paths or [])


@commands.command()
def summary(
    ctx: typer.Context,
    sources: Annotated[List[Path], typer.Option(
        "--from", metavar="FILE.json",
        help="A command's --output json result, named after it (build.json, stage.json); repeat "
             "in run order; a missing file is a command that never ran")],
    output_file: Annotated[Optional[Path], typer.Option(
        "--output-file", metavar="PATH",
        help="Also append the Markdown to this file, e.g. \"$GITHUB_STEP_SUMMARY\"")] = None,
) -> None:
    """Write a CI job summary in Markdown from the JSON results of build and stage."""
    _run(ctx, "summary", sources=sources, output_file=output_file)


@commands.command()
def seal(
    ctx: typer.Context,
    cert: Annotated[Path, typer.Option(
        metavar="CERT.pem", help="Controller certificate (kubeseal --fetch-cert) or public key")],
    scope: Annotated[Scope, typer.Option(help="Sealing scope")] = Scope.strict,
    file: Annotated[Optional[Path], typer.Option(
        "--file", "-f", metavar="FILE", help="Secret manifest [default: stdin]")] = None,
) -> None:
    """Encrypt a Secret manifest into a SealedSecret (kubeseal-compatible)."""
    _run(ctx, "seal", cert=cert, scope=scope.value, file=file)


@commands.command()
def unseal(
    ctx: typer.Context,
    key: Annotated[Path, typer.Option(metavar="KEY.pem", help="Private sealing key")],
    file: Annotated[Optional[Path], typer.Option(
        "--file", "-f", metavar="FILE", help="SealedSecret manifest [default: stdin]")] = None,
) -> None:
    """Decrypt a SealedSecret into a Secret manifest (used on the VM)."""
    _run(ctx, "unseal", key=key, file=file)


@commands.command()
def sync(
    ctx: typer.Context,
    revision: Annotated[Optional[str], typer.Option(
        metavar="SHA", help="Move to this commit [default: the tip of the remote branch]")] = None,
    wait_timeout: Annotated[Optional[str], typer.Option(
        metavar="SECONDS", help="compose up --wait-timeout" + _DURATION_HELP
                                + " [default: timeouts.failure]")] = None,
    check: Annotated[bool, typer.Option(
        "--check", help="Read-only: report the checkout's revision and the stack's health; "
                        "no fetch, no env file, no compose pull/up")] = False,
    systemd_units: Annotated[Optional[Path], typer.Option(
        "--systemd-units", metavar="DIR",
        help="Write the target's gitopsctl-sync .service and .timer (from the config) into DIR; "
             "do not sync")] = None,
    target: Annotated[Optional[str], typer.Option(
        metavar="NAME", autocompletion=_config_names("targets"),
        help="The VM target (a name under targets: in gitopsctl.yaml) this VM runs "
             "[default: the only VM target]")] = None,
) -> None:
    """On the VM: fast-forward the checkout, unseal secrets, docker compose pull and up."""
    _run(ctx, "sync", revision=revision, wait_timeout=wait_timeout, systemd_units=systemd_units,
         check=check, target=target,
         durations={"wait_timeout": ("--wait-timeout", "timeouts.failure")})


@commands.command()
def status(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="How many deploys and rollbacks to list")] = 10,
    health: Annotated[bool, typer.Option(
        "--health/--no-health", help="Probe each target's health now")] = True,
) -> None:
    """Show per target the live source, image and health, and the latest deploys and rollbacks."""
    _run(ctx, "status", limit=limit, health=health)


@commands.command()
def history(
    ctx: typer.Context,
    service: Annotated[Optional[str], typer.Option(
        metavar="NAME", autocompletion=_config_names("services"),
        help="Only this service's deploys, the rollbacks reverting them, and pauses")] = None,
    source: Annotated[Optional[str], typer.Option(
        metavar="SHA", help="Only the deploys and rollbacks of this source commit")] = None,
    since: Annotated[Optional[str], typer.Option(
        metavar="DATE|DURATION", help="Only newer records: 2h, 7d, 2026-11-30, 2026-11-30T18:00Z")] = None,
    limit: Annotated[int, typer.Option(metavar="N", help="At most N records")] = 20,
) -> None:
    """List deploys, rollbacks, suspends and resumes read from git, newest first."""
    _run(ctx, "history", service=service, source=source, since=since, limit=limit)


@commands.command()
def suspend(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option(
        metavar="TEXT", help="Why, recorded in the suspend commit")],
) -> None:
    """Pause deploys and Flux image automation with one commit saying who and why."""
    _run(ctx, "suspend", reason=reason)


@commands.command()
def resume(
    ctx: typer.Context,
    reason: Annotated[Optional[str], typer.Option(
        metavar="TEXT", help="Why, recorded in the resume commit")] = None,
) -> None:
    """Let deploys (and the image automation the suspend paused) run again, with one commit."""
    _run(ctx, "suspend", reason=reason, resume=True)


@commands.command()
def diff(
    ctx: typer.Context,
    source: Annotated[Optional[str], typer.Option(
        metavar="SHA", help="App commit whose stage to preview [default: HEAD]")] = None,
    service: Annotated[Optional[str], typer.Option(
        metavar="NAME", autocompletion=_config_names("services"),
        help="Preview only this service's edits [default: every service in stage.order]")] = None,
    allow_unbuilt: Annotated[bool, typer.Option(
        "--allow-unbuilt", help="Preview <repository>:<sha7> even when no build record or "
                                "registry tag shows it was built")] = False,
    exit_code: Annotated[bool, typer.Option(
        "--exit-code", help="Exit 1 when the stage would change anything (as git diff)")] = False,
) -> None:
    """Show what a stage of a source would change: the marker edits, and the rendered
    manifests (kustomize) and compose config before and after. Changes nothing."""
    _run(ctx, "diff", source=source, service=service, allow_unbuilt=allow_unbuilt,
         exit_code=exit_code)


class SandboxAction(str, Enum):
    demo = "demo"
    up = "up"
    down = "down"


@commands.command()
def sandbox(
    ctx: typer.Context,
    action: Annotated[SandboxAction, typer.Argument(
        metavar="demo|up|down",
        help="demo: play the whole story and clean up; up: keep it running until Ctrl-C; "
             "down: stop a running `sandbox up`")],
    dir: Annotated[Optional[Path], typer.Option(
        "--dir", metavar="DIR",
        help="Work directory (new or empty) [default: a new one under /tmp]; "
             "for down: the one `sandbox up` printed [default: the last one it recorded]")] = None,
    keep: Annotated[bool, typer.Option(
        "--keep", help="Keep the work directory's files (git remote, logs) after stopping")] = False,
    stage_delay: Annotated[str, typer.Option(
        metavar="SECONDS", help="stage.delay between frontend and backend in the sandbox"
                                + _DURATION_HELP)] = "5",
    timeout: Annotated[str, typer.Option(
        metavar="SECONDS", help="down: how long to wait for `sandbox up` to clean up"
                                + _DURATION_HELP)] = "120",
) -> None:
    """Run the whole homelab on this machine: demo the deploy/rollback story, or keep it up."""
    _run(ctx, "sandbox", action=action.value, workdir=dir, keep=keep, stage_delay=stage_delay,
         timeout=timeout, durations={"stage_delay": ("--stage-delay", "stage.delay"),
                                     "timeout": ("--timeout", "sandbox.down_timeout")})


@commands.command("config")
def config_command(
    ctx: typer.Context,
    schema: Annotated[bool, typer.Option("--schema", help="Print the JSON Schema for editors instead")] = False,
    migrate: Annotated[bool, typer.Option(
        "--migrate", help="Print the file in the version 2 format (defaults left out), to replace a "
                          "version 1 gitopsctl.yaml")] = False,
) -> None:
    """Validate gitopsctl.yaml and print the effective configuration (defaults and env applied)."""
    _run(ctx, "config", schema=schema, migrate=migrate)


@commands.command("init")
def init_command(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option(
        "--yes", "-y", help="Write without asking (without a terminal it never asks)")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Overwrite an existing gitopsctl.yaml")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", "--print", help="Print the proposed gitopsctl.yaml, write nothing")] = False,
) -> None:
    """Write a first gitopsctl.yaml from the setter markers, Flux objects and compose files found."""
    _run(ctx, "init", yes=yes, force=force, dry_run=dry_run)
