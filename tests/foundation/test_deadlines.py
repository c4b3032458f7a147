"""Every deadline is a finite number in its documented range: config file, environment
overrides and CLI options share one rule (config.duration_option / out_of_range)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from gitopsctl import config
from gitopsctl.errors import UsageError

from tests.fixtures.configs import MINIMAL

# (command line before the option, option, the config key whose range it shares)
OPTIONS = [
    (["stage"], "--delay", "stage.delay"),
    (["stage"], "--timeout", "timeouts.failure"),
    (["verify"], "--timeout", "timeouts.failure"),
    (["sync"], "--wait-timeout", "timeouts.failure"),
    (["sandbox", "demo"], "--stage-delay", "stage.delay"),
    (["sandbox", "down"], "--timeout", "sandbox.down_timeout"),
]
CONFIG_KEYS = ["timeouts.failure", "timeouts.http", "timeouts.ssh_connect", "stage.delay",
               "targets.vm.sync_interval"]


def metadata(key: str) -> dict:
    return config.CLI_DURATIONS.get(key) or config.field_metadata(key)


def bad_values(key: str) -> list[str]:
    """nan, the infinities, a negative, and 0 when 0 is below the minimum."""
    values = ["nan", "inf", "-inf", "-5", "1e400"]
    if metadata(key)["minimum"] > 0:
        values.append("0")
    return values


def run(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GITOPSCTL_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "gitopsctl", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.fixture
def homelab_dir(tmp_path):
    """A directory with a valid config, so only the option can be what is wrong."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "gitopsctl.yaml").write_text(MINIMAL)
    return tmp_path


@pytest.mark.parametrize("prefix,option,key", OPTIONS, ids=[f"{' '.join(p)} {o}" for p, o, _ in OPTIONS])
def test_every_duration_option_refuses_non_finite_negative_and_too_small(homelab_dir, prefix, option,
                                                                        key):
    md = metadata(key)
    for value in bad_values(key):
        result = run(["-o", "json", *prefix, f"{option}={value}"], homelab_dir)
        assert result.returncode == 2, (value, result.stdout, result.stderr)
        error = json.loads(result.stdout)["error"]
        assert error["kind"] == "usage", (value, error)
        assert error["message"].startswith(f"{option}:"), error
        assert f"between {md['minimum']:g}s and {md['maximum']:g}s" in error["message"], error
        assert error["details"]["option"] == option and error["details"]["key"] == key
        assert f"e.g. {option} " in error["hint"], error
        assert "Traceback" not in result.stderr


def test_text_mode_names_option_range_and_example(homelab_dir):
    result = run(["verify", "--timeout", "nan"], homelab_dir)
    assert result.returncode == 2
    assert "--timeout: expected a duration, a finite value between 1s and 7200s" in result.stderr
    assert "like timeouts.failure in gitopsctl.yaml; got 'nan'" in result.stderr
    assert "hint: e.g. --timeout 300" in result.stderr


def test_a_too_large_option_is_refused_and_durations_are_accepted_like_in_the_config(homelab_dir):
    result = run(["-o", "json", "stage", "--timeout", "3h"], homelab_dir)
    assert result.returncode == 2 and "7200s" in json.loads(result.stdout)["error"]["message"]
    # a valid value gets past the check (and then fails for an unrelated reason: no remote)
    result = run(["-o", "json", "verify", "--timeout", "5m"], homelab_dir)
    assert "--timeout" not in json.loads(result.stdout).get("error", {}).get("message", "")


VM = ("  vm:\n    host: 127.0.0.2\n    user: deploy\n    compose_file: c.yml\n"
      "    health_url: http://127.0.0.1:8081/healthz\n")


def config_text(key: str, value: str | None) -> str:
    """MINIMAL (plus a VM target) with `key` set to the YAML `value`, or left out."""
    text = MINIMAL.replace("targets:\n", "targets:\n" + VM)
    if value is None:
        return text
    if key == "stage.delay":
        return text.replace("  order: [frontend]\n", f"  order: [frontend]\n  delay: {value}\n")
    if key == "targets.vm.sync_interval":
        return text.replace(VM, VM + f"    sync_interval: {value}\n")
    section, name = key.split(".")
    return text + f"{section}:\n  {name}: {value}\n"


@pytest.mark.parametrize("key", CONFIG_KEYS)
def test_every_duration_config_key_refuses_nan_inf_negative_and_too_small(tmp_path, key):
    md = config.field_metadata(key)
    values = [".nan", ".inf", "-.inf", "-5", "1e400", "10000000000000000000000000000000000000000"]
    values += ["0"] if md["minimum"] > 0 else []
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    path = tmp_path / "gitopsctl.yaml"
    env_name = "GITOPSCTL_" + key.upper().replace(".", "__")
    for value in values:
        path.write_text(config_text(key, value))
        result = run(["-o", "json", "config"], tmp_path)
        assert result.returncode == 2, (key, value, result.stdout, result.stderr)
        error = json.loads(result.stdout)["error"]
        assert error["kind"] == "config" and error["details"]["key"] == key, error
        assert f"between {md['minimum']:g}s and {md['maximum']:g}s" in error["message"], error
        line = next(i for i, l in enumerate(path.read_text().splitlines(), 1) if f" {value}" in l)
        assert error["location"].startswith(f"{path.resolve()}:{line}:"), error
        # the same value through the environment override names the variable
        path.write_text(config_text(key, None))
        result = run(["-o", "json", "config"], tmp_path, env={env_name: value})
        assert result.returncode == 2, (env_name, value, result.stdout)
        assert env_name in json.loads(result.stdout)["error"]["location"]


def test_every_number_in_the_config_has_a_documented_minimum_and_maximum():
    def walk(cls, prefix=""):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.metadata.get("internal"):
                continue
            tp = hints[f.name]
            name = f"{prefix}{f.name}"
            if typing.get_origin(tp) in (dict, tuple):
                tp = typing.get_args(tp)[-1 if typing.get_origin(tp) is dict else 0]
                name += ".<name>" if typing.get_origin(hints[f.name]) is dict else "[]"
            inner = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
            sections = [a for a in inner if dataclasses.is_dataclass(a)]
            for section in sections:  # every kind of target, every list item
                yield from walk(section, f"{name}.")
            if not sections and (tp in (int, float) or f.metadata.get("duration")):
                yield name, f.metadata

    numbers = dict(walk(config.Config))
    assert "timeouts.failure" in numbers and "targets.<name>.sync_interval" in numbers
    assert "targets.<name>.port" in numbers
    for key, md in numbers.items():
        if md.get("choices"):
            continue  # version: one of a fixed set
        assert md.get("minimum") is not None and md.get("maximum") is not None, key
    assert config.field_metadata("timeouts.failure")["minimum"] > 0  # 0 would revert at once


@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers()))
def test_the_validator_accepts_exactly_the_finite_values_in_range(value):
    for key in ("timeouts.failure", "timeouts.http", "stage.delay", "sandbox.down_timeout"):
        md = metadata(key)
        inside = isinstance(value, int) or math.isfinite(value)
        inside = inside and md["minimum"] <= value <= md["maximum"]
        try:
            seconds = config.duration_option("--x", value, key)
        except UsageError as exc:
            assert not inside, (key, value, exc)
            assert exc.exit_code == 2 and "--x" in exc.message
        else:
            assert inside, (key, value)
            assert seconds == float(value) and math.isfinite(seconds)


@given(st.floats(allow_nan=True, allow_infinity=True),
       st.sampled_from(["", "s", "ms", "m", "h"]))
def test_text_durations_follow_the_same_rule(number, unit):
    text = f"{number!r}{unit}"
    seconds = config.parse_seconds(text)
    try:
        config.duration_option("--x", text, "timeouts.failure")
    except UsageError:
        assert seconds is None or config.out_of_range(seconds, metadata("timeouts.failure"))
    else:
        assert seconds is not None and 1 <= seconds <= 7200
