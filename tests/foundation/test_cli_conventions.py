"""CLI conventions a user of other CLIs expects: global options on either side of the
subcommand, Typer's shell completion (names from gitopsctl.yaml), --version with the commit.

Every check runs gitopsctl as a subprocess in a real git repository with a local bare remote.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import pytest
import typer

from tests.fixtures.configs import kube_target, service, v2_text, vm_target

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG = v2_text(
    {"web": service("web", "cluster", workloads=[{"kind": "Deployment", "name": "web", "namespace": "shop"}]),
     "api": service("api", "vm-one", paths=["deploy/vm"])},
    {"cluster": kube_target(), "vm-one": vm_target()}, stage={"order": ["web", "api"]})
FILES = {
    "deploy/web/configmap.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\n",
    "deploy/vm/docker-compose.yml":
        'services:\n  api:\n    image: 127.0.0.1:5000/homelab/api:1 # {"$imagepolicy": "flux-system:api"}\n',
}


def run(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("GITOPSCTL_", "_GITOPSCTL_", "COMP_", "_TYPER_"))}
    for key in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE"):
        full_env.pop(key, None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "gitopsctl", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def homelab(make_git_remote):
    """A clone whose gitopsctl.yaml is at its root, pushed to a local bare remote."""
    return make_git_remote(files={"gitopsctl.yaml": CONFIG, **FILES}).work


@pytest.fixture
def homelab_config_elsewhere(make_git_remote, tmp_path):
    """A clone without gitopsctl.yaml at its root; the config lives outside it."""
    work = make_git_remote(files=FILES).work
    elsewhere = tmp_path / "elsewhere" / "homelab.yaml"
    elsewhere.parent.mkdir()
    elsewhere.write_text(CONFIG)
    return work, elsewhere


COMMANDS = {"config": ["config"], "check": ["check"], "status": ["status", "--no-health"]}


def _same(before: subprocess.CompletedProcess, after: subprocess.CompletedProcess) -> None:
    assert "No such option" not in after.stderr, after.stderr
    assert (after.returncode, after.stdout, after.stderr) == \
        (before.returncode, before.stdout, before.stderr)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("option", [["-o", "json"], ["--output", "json"], ["--output=json"]])
def test_output_after_the_subcommand_is_the_same_json(homelab, command, option):
    before = run(*option, *COMMANDS[command], cwd=homelab)
    after = run(*COMMANDS[command], *option, cwd=homelab)
    _same(before, after)
    doc = json.loads(after.stdout)  # exactly one document, as before the subcommand
    assert doc["ok"] is (after.returncode == 0)
    assert after.returncode in (0, 1), after.stderr  # check finds problems: 1, never a usage error


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("option", [["-v"], ["--verbose"]])
def test_verbose_after_the_subcommand(homelab, command, option):
    _same(run(*option, *COMMANDS[command], cwd=homelab), run(*COMMANDS[command], *option, cwd=homelab))


@pytest.mark.parametrize("command", COMMANDS)
def test_config_after_the_subcommand(homelab_config_elsewhere, command):
    work, elsewhere = homelab_config_elsewhere
    without = run("-o", "json", *COMMANDS[command], cwd=work)
    before = run("--config", str(elsewhere), "-o", "json", *COMMANDS[command], cwd=work)
    after = run(*COMMANDS[command], "-o", "json", "--config", str(elsewhere), cwd=work)
    _same(before, after)
    assert after.returncode in (0, 1) and json.loads(after.stdout)
    assert without.returncode != after.returncode or without.stdout != after.stdout  # it took effect
    if command == "config":
        assert json.loads(after.stdout)["config"] == str(elsewhere)


@pytest.mark.parametrize("command", COMMANDS)
def test_repo_after_the_subcommand(homelab, tmp_path, command):
    outside = tmp_path / "outside"  # not a git repository: only --repo finds the homelab
    outside.mkdir()
    without = run("-o", "json", *COMMANDS[command], cwd=outside)
    before = run("--repo", str(homelab), "-o", "json", *COMMANDS[command], cwd=outside)
    after = run(*COMMANDS[command], "--repo", str(homelab), "-o", "json", cwd=outside)
    _same(before, after)
    assert after.returncode in (0, 1), after.stderr
    assert without.returncode == 2 and json.loads(without.stdout)["ok"] is False


# an SGR sequence that sets a foreground colour (30-38, 90-97), alone or among other attributes
COLOUR = re.compile(r"\x1b\[(?:[0-9]+;)*(?:3[0-8]|9[0-7])(?:;[0-9]+)*m")


def test_no_color_after_the_subcommand(homelab):
    forced = {"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1"}
    failing = ["stage", "--source", "deadbeef"]  # its red ✗ line is the colour to lose
    colored = run(*failing, cwd=homelab, env=forced)
    before = run("--no-color", *failing, cwd=homelab, env=forced)
    after = run(*failing, "--no-color", cwd=homelab, env=forced)
    assert COLOUR.search(colored.stderr)  # the control: colour does appear when allowed
    _same(before, after)
    assert not COLOUR.search(after.stdout + after.stderr)  # bold and italic may stay


def test_the_brief_example_stage_with_output_and_verbose_after(homelab):
    def doc(result):
        data = json.loads(result.stdout)
        data.pop("elapsed_seconds")
        return result.returncode, data

    before = run("-o", "json", "-v", "stage", "--source", "deadbeef", cwd=homelab)
    after = run("stage", "--source", "deadbeef", "--output", "json", "-v", cwd=homelab)
    assert "No such option" not in after.stderr
    assert doc(after) == doc(before)
    assert doc(after)[0] == 2 and doc(after)[1]["error"]["kind"] == "input"


def test_an_option_after_the_subcommand_wins_over_one_before(homelab):
    result = run("-o", "text", "config", "-o", "json", cwd=homelab)
    assert result.returncode == 0 and json.loads(result.stdout)["ok"] is True


def test_environment_still_sets_a_global_option_for_a_subcommand(homelab):
    result = run("config", cwd=homelab, env={"GITOPSCTL_OUTPUT": "json"})
    assert json.loads(result.stdout)["ok"] is True


def test_a_subcommand_option_is_still_its_own(homelab):
    # `--check` is sync's own flag and `--timeout` verify's: the global copies do not touch them
    result = run("verify", "--timeout", "soon", "-o", "json", cwd=homelab)
    assert result.returncode == 2 and "--timeout" in json.loads(result.stdout)["error"]["message"]
    assert "No such option" in run("status", "--frobnicate", cwd=homelab).stderr


def test_no_subcommand_declares_a_global_flag():
    """A subcommand's own -o (say) would silently shadow the global one there: refuse it here."""
    from gitopsctl import cliapp

    assert cliapp.global_option_clashes() == {}, (
        "these subcommands declare a global option's flag; rename theirs: "
        f"{cliapp.global_option_clashes()}")


def test_a_clash_is_found_and_the_subcommand_keeps_its_meaning():
    import typer

    from gitopsctl import cliapp, cliglobals

    extra = typer.Typer()
    extra.command()(_export_with_its_own_o)
    command = typer.main.get_command(extra)
    shared = cliglobals.global_params(typer.main.get_command(cliapp.app))
    assert cliglobals.clashes(command, shared) == ["-o"]
    cliglobals.inherit(command, shared)
    ctx = command.make_context("export", ["-o", "report.md", "--verbose"])
    assert ctx.params["out"] == "report.md"  # its own meaning; --verbose still inherited
    assert not any("--output" in p.opts for p in command.params)


def _export_with_its_own_o(out: Annotated[str, typer.Option("--out", "-o")] = "-") -> None:
    """A subcommand with its own -o (typer reads this signature, so it lives at module level)."""


# -- completion ------------------------------------------------------------------------------

def complete_bash(cwd: Path, line: str) -> list[str]:
    words = line.split(" ")
    result = run(cwd=cwd, env={"_GITOPSCTL_COMPLETE": "complete_bash", "COMP_WORDS": line,
                               "COMP_CWORD": str(len(words) - 1)})
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.parametrize("line,names", [
    ("gitopsctl build --service ", ["web", "api", "all"]),
    ("gitopsctl bump --service w", ["web"]),
    ("gitopsctl verify ", ["web", "api", "all"]),
    ("gitopsctl verify --target ", ["cluster", "vm-one"]),
    ("gitopsctl sync --target v", ["vm-one"]),
])
def test_bash_completion_of_names_from_the_config(homelab, line, names):
    assert complete_bash(homelab, line) == names


def test_completion_finds_the_config_through_repo_and_config_options(homelab, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    assert complete_bash(outside, "gitopsctl build --service ") == []  # no config here: nothing
    assert complete_bash(outside, f"gitopsctl --repo {homelab} build --service ") == ["web", "api", "all"]
    assert complete_bash(outside, f"gitopsctl build --repo {homelab} --service ") == ["web", "api", "all"]
    config = homelab / "gitopsctl.yaml"
    assert complete_bash(outside, f"gitopsctl verify --config {config} --target ") == ["cluster", "vm-one"]


def test_bash_completion_of_subcommands_and_options(homelab):
    assert complete_bash(homelab, "gitopsctl sta") == ["stage", "status"]
    assert "--install-completion" in complete_bash(homelab, "gitopsctl --")


def test_zsh_and_fish_completion_of_service_names(homelab):
    zsh = run(cwd=homelab, env={"_GITOPSCTL_COMPLETE": "complete_zsh",
                                "_TYPER_COMPLETE_ARGS": "gitopsctl build --service "})
    assert zsh.returncode == 0 and '"web"' in zsh.stdout and '"api"' in zsh.stdout
    fish = run(cwd=homelab, env={"_GITOPSCTL_COMPLETE": "complete_fish",
                                 "_TYPER_COMPLETE_FISH_ACTION": "get-args",
                                 "_TYPER_COMPLETE_ARGS": "gitopsctl verify --target "})
    assert fish.returncode == 0 and fish.stdout.split() == ["cluster", "vm-one"]


def test_real_bash_completes_with_the_shown_script(homelab):
    console_script = Path(sys.executable).parent / "gitopsctl"
    assert console_script.exists(), "gitopsctl's console script is not installed next to python"
    program = ('source <(gitopsctl --show-completion bash); '
               'COMP_WORDS=(gitopsctl build --service ""); COMP_CWORD=3; '
               '_gitopsctl_completion gitopsctl; printf "%s\\n" "${COMPREPLY[@]}"')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITOPSCTL_", "_GITOPSCTL_"))}
    env["PATH"] = f"{console_script.parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], cwd=homelab, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["web", "api", "all"], result.stderr


def test_completion_stays_cheap(homelab):
    code = ("import sys, atexit\n"
            "heavy = ('kubernetes', 'docker', 'fabric', 'paramiko', 'rich', 'gitopsctl.commands')\n"
            "atexit.register(lambda: sys.stderr.write('LOADED %s' % sorted(m for m in heavy if m in sys.modules)))\n"
            "from gitopsctl.cli import main\nmain()\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITOPSCTL_", "_GITOPSCTL_"))}
    env.update({"_GITOPSCTL_COMPLETE": "complete_bash", "COMP_WORDS": "gitopsctl build --service ",
                "COMP_CWORD": "3"})
    result = subprocess.run([sys.executable, "-c", code], cwd=homelab, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.split() == ["web", "api", "all"]
    assert "LOADED []" in result.stderr, result.stderr


def test_help_offers_install_and_show_completion(tmp_path):
    result = run("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "--install-completion" in result.stdout and "--show-completion" in result.stdout


@pytest.mark.parametrize("shell,marker", [
    ("bash", "complete -o default -F _gitopsctl_completion gitopsctl"),
    ("zsh", "#compdef gitopsctl"),
    ("fish", "complete --command gitopsctl"),
])
def test_show_completion_prints_the_script(tmp_path, shell, marker):
    result = run("--show-completion", shell, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert marker in result.stdout and "_GITOPSCTL_COMPLETE=complete_" + shell in result.stdout


def test_show_completion_refuses_an_unknown_shell(tmp_path):
    result = run("--show-completion", "tcsh", cwd=tmp_path)
    assert result.returncode == 1 and "tcsh" in result.stderr and result.stdout == ""


def test_install_completion_writes_the_script_and_sources_it(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    result = run("--install-completion", "bash", cwd=tmp_path, env={"HOME": str(home)})
    assert result.returncode == 0, result.stderr
    script = home / ".bash_completions" / "gitopsctl.sh"
    assert "_GITOPSCTL_COMPLETE=complete_bash" in script.read_text()
    assert f"source '{script}'" in (home / ".bashrc").read_text()


# -- version ---------------------------------------------------------------------------------

def _checkout_head() -> str:
    return subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()


def test_version_names_the_commit(tmp_path):
    result = run("--version", cwd=tmp_path)
    assert result.returncode == 0
    match = re.fullmatch(r"gitopsctl (\d+\.\d+\.\d+\S*) \(commit ([0-9a-f]{7})\)\n", result.stdout)
    assert match, result.stdout
    assert match.group(2) == _checkout_head()[:7]


@pytest.mark.parametrize("args", [["-o", "json", "--version"], ["--version", "-o", "json"],
                                  ["status", "--version", "--output", "json"]])
def test_version_as_json(tmp_path, args):
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc) == {"version", "commit"}
    assert doc["commit"] == _checkout_head()
    assert run("--version", cwd=tmp_path).stdout.startswith(f"gitopsctl {doc['version']} ")
