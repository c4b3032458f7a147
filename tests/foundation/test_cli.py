"""The CLI surface as a user meets it: a real subprocess, stdout and stderr apart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = ["build", "bump", "stage", "verify", "rollback", "check", "seal", "unseal", "sync", "status",
            "config", "init"]


def run(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GITOPSCTL_")}
    full_env.pop("NO_COLOR", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "gitopsctl", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=60)


def test_help_lists_every_subcommand_with_a_summary():
    result = run("--help")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    for command in COMMANDS:
        line = next((l for l in lines if l.strip().startswith(command + " ")), None)
        assert line is not None, f"{command} missing from --help"
        assert len(line.split(None, 1)[1]) > 10, f"{command} has no summary"
    for option in ["--config", "--repo", "--output", "--verbose", "--no-color"]:
        assert option in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_each_subcommand_documents_its_options(command):
    result = run(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: gitopsctl " + command in result.stdout
    assert "--help" in result.stdout


@pytest.mark.parametrize("command,option", [
    ("build", "--no-push"), ("build", "--no-cache"), ("build", "--source"),
    ("bump", "--policy"), ("bump", "--dry-run"), ("bump", "--no-commit"), ("bump", "--service"),
    ("stage", "--source"), ("verify", "--target"), ("verify", "--timeout"),
    ("rollback", "--to"), ("rollback", "--dry-run"), ("seal", "--cert"), ("seal", "--scope"),
    ("unseal", "--key"), ("sync", "--revision"), ("init", "--force"), ("init", "--dry-run")])
def test_documented_options(command, option):
    assert option in run(command, "--help").stdout


def test_version():
    result = run("--version")
    assert result.returncode == 0 and result.stdout.startswith("gitopsctl ")


def test_unknown_option_is_a_usage_error():
    result = run("build", "--frobnicate")
    assert result.returncode == 2
    assert "No such option" in result.stderr


BAD_CONFIG = "registry:\n  url: harbor.lan\n  project: homelab\n  passwrd: hunter2\n"


def test_config_error_in_json_mode_is_one_document_on_stdout(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "gitopsctl.yaml").write_text(BAD_CONFIG)
    result = run("--output", "json", "config", cwd=tmp_path)
    assert result.returncode == 2
    doc = json.loads(result.stdout)  # exactly one document: json.loads rejects trailing data
    assert doc["ok"] is False
    assert doc["error"]["kind"] == "config"
    assert doc["error"]["location"].endswith("gitopsctl.yaml:4:3")
    assert doc["error"]["hint"]
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert "hunter2" not in result.stdout + result.stderr


def test_config_error_in_text_mode_names_file_line_and_fix(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "gitopsctl.yaml").write_text(BAD_CONFIG)
    result = run("config", cwd=tmp_path)
    assert result.returncode == 2
    assert "gitopsctl.yaml:4:3: registry.passwrd: unknown key" in result.stderr
    assert "hint:" in result.stderr
    assert result.stdout == ""


def test_config_from_environment_variable(tmp_path):
    cfg = tmp_path / "elsewhere.yaml"
    cfg.write_text(BAD_CONFIG)
    result = run("config", cwd=tmp_path, env={"GITOPSCTL_CONFIG": str(cfg)})
    assert result.returncode == 2
    assert "elsewhere.yaml:4:3" in result.stderr


def test_output_from_environment_variable(tmp_path):
    (tmp_path / "gitopsctl.yaml").write_text(BAD_CONFIG)
    result = run("--repo", str(tmp_path), "config", env={"GITOPSCTL_OUTPUT": "json"})
    assert json.loads(result.stdout)["error"]["kind"] == "config"


@pytest.mark.parametrize("how", ["flag", "env"])
def test_no_color(tmp_path, how):
    (tmp_path / "gitopsctl.yaml").write_text(BAD_CONFIG)
    args = ["--repo", str(tmp_path)] + (["--no-color"] if how == "flag" else []) + ["config"]
    env = {"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1"}
    if how == "env":
        env["NO_COLOR"] = "1"
    colored = run("--repo", str(tmp_path), "config", env={"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1"})
    plain = run(*args, env=env)
    assert "\x1b[" in colored.stderr  # the control: colour does appear when allowed
    assert "\x1b[3" not in plain.stderr and "\x1b[9" not in plain.stderr


def test_heavy_libraries_are_not_imported_at_startup():
    code = ("import sys; from gitopsctl import cliapp; "
            "print(sorted(m for m in ('kubernetes','docker','fabric','paramiko','git') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_config_command_shows_effective_config_as_json():
    example = Path(__file__).resolve().parents[2] / "examples" / "gitopsctl.yaml"
    result = run("--config", str(example), "-o", "json", "config",
                 env={"GITOPSCTL_STAGE__DELAY": "0"})
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    assert doc["effective"]["stage"] == {"order": ["frontend", "backend"], "delay": 0.0}
    assert doc["effective"]["timeouts"]["failure"] == 300.0


def test_shipped_schema_matches_the_config_dataclasses():
    from gitopsctl.schema import render

    shipped = Path(__file__).resolve().parents[2] / "gitopsctl" / "schema" / "gitopsctl.schema.json"
    assert shipped.read_text() == render(), "regenerate: python -m gitopsctl.schema > " + str(shipped)


def test_example_config_validates_against_the_schema():
    import jsonschema
    from ruamel.yaml import YAML

    root = Path(__file__).resolve().parents[2]
    schema = json.loads((root / "gitopsctl" / "schema" / "gitopsctl.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(YAML(typ="safe").load((root / "examples" / "gitopsctl.yaml").read_text()), schema)
    bad = YAML(typ="safe").load((root / "examples" / "gitopsctl.yaml").read_text())
    bad["stage"]["delay"] = "soon"
    with __import__("pytest").raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_configuration_reference_is_generated_from_the_schema():
    from gitopsctl.schema import markdown

    doc = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    assert doc.read_text() == markdown(), "regenerate: python -m gitopsctl.schema --markdown > docs/configuration.md"
    assert "`timeouts.failure`" in doc.read_text()
