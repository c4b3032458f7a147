"""The pieces that need no VM: remote command quoting, env-file lines, systemd units."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from gitopsctl import config as config_mod
from gitopsctl.commands.sync import _env_line
from gitopsctl.errors import ConfigError, InputError
from gitopsctl.systemd import render_units, write_units
from gitopsctl.targets.vm import sync_command, validate_revision

GITOPSCTL = str(Path(sys.executable).parent / "gitopsctl")
shas = st.text(alphabet="0123456789abcdef", min_size=7, max_size=40)
paths = st.text(alphabet=st.characters(blacklist_characters="\x00\n\r", blacklist_categories=("Cs",)),
                min_size=1, max_size=40).map(lambda s: "/" + s)


@given(checkout=paths, sha=shas, wait=st.floats(min_value=0.1, max_value=1e5))
def test_remote_command_survives_the_remote_shell_intact(checkout, sha, wait):
    line = sync_command("/opt/gitopsctl/bin/gitopsctl", checkout, sha, wait)
    assert shlex.split(line) == ["/opt/gitopsctl/bin/gitopsctl", "--repo", checkout, "--output",
                                 "json", "sync", "--revision", sha, "--wait-timeout",
                                 str(min(7200, max(1, int(round(wait)))))]


@given(st.text(max_size=50).filter(lambda s: not (7 <= len(s) <= 64 and set(s) <= set("0123456789abcdef"))))
def test_anything_but_a_hex_sha_is_rejected(text):
    with pytest.raises(InputError):
        validate_revision(text)


def test_remote_command_and_checkout_are_validated():
    with pytest.raises(ConfigError):
        sync_command("gitopsctl; rm -rf /", "/opt/homelab", "a" * 40, 10)
    with pytest.raises(ConfigError):
        sync_command("gitopsctl", "relative/path", "a" * 40, 10)


def _parse_env_line(line: str) -> tuple[str, str]:
    # compose reads single-quoted values literally: KEY='value'
    key, _, rest = line.rstrip("\n").partition("=")
    assert rest[0] == "'" and rest[-1] == "'"
    return key, rest[1:-1]


@given(value=st.text(alphabet=st.characters(blacklist_characters="\x00\n\r'",
                                            blacklist_categories=("Cs",)), max_size=60))
def test_env_lines_round_trip(value):
    assert _parse_env_line(_env_line("API_TOKEN", value.encode(), "s.yaml")) == ("API_TOKEN", value)


@pytest.mark.parametrize("value", ["two\nlines", "cr\rhere", "it's", "nul\x00"])
def test_env_values_that_cannot_be_literal_are_refused_without_echoing(value):
    with pytest.raises(InputError) as err:
        _env_line("API_TOKEN", value.encode(), "deploy/s.sealed.yaml")
    assert value not in str(err.value) and value not in (err.value.hint or "")
    assert "API_TOKEN" in str(err.value) and "deploy/s.sealed.yaml" in str(err.value)


def test_bad_env_names_are_refused():
    with pytest.raises(InputError):
        _env_line("1BAD", b"x", "s.yaml")
    with pytest.raises(InputError):
        _env_line("with-dash", b"x", "s.yaml")


def _config(tmp_path: Path, interval: str = "90s"):
    path = tmp_path / "gitopsctl.yaml"
    path.write_text(textwrap.dedent(f"""\
        registry: {{url: 127.0.0.1:5000, project: homelab, insecure: true}}
        services:
          backend: {{image: backend, context: app, target: vm, policy: "flux-system:backend",
                     paths: [deploy]}}
        stage: {{order: [backend]}}
        timeouts: {{failure: 2m}}
        targets:
          vm:
            host: 127.0.0.2
            user: deploy
            checkout: /opt/homelab
            compose_file: deploy/docker-compose.yml
            health_url: http://127.0.0.1:8080/healthz
            remote_command: {GITOPSCTL}
            sync_interval: {interval}
        """))
    return config_mod.load(path, environ={})


def test_units_take_interval_and_deadline_from_the_config(tmp_path):
    units = render_units(_config(tmp_path, "90s"))
    timer, service = units["gitopsctl-sync.timer"], units["gitopsctl-sync.service"]
    assert "OnUnitInactiveSec=90s\n" in timer
    assert f"ExecStart={GITOPSCTL} --repo /opt/homelab sync\n" in service
    assert "User=deploy\n" in service and "TimeoutStartSec=360s\n" in service
    assert "${" not in timer + service
    assert "OnUnitInactiveSec=300s\n" in render_units(_config(tmp_path, "5m"))["gitopsctl-sync.timer"]


def test_rendered_units_pass_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze (Debian systemd) is needed to check the units"
    written = write_units(render_units(_config(tmp_path)), tmp_path / "units")
    assert [p.stat().st_mode & 0o777 for p in written] == [0o644, 0o644]
    proc = subprocess.run([analyze, "verify", *map(str, written)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "gitopsctl-sync" not in proc.stderr, proc.stderr


def test_cli_writes_the_units(tmp_path):
    cfg = _config(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run([GITOPSCTL, "--config", str(cfg.path), "--repo", str(tmp_path), "sync",
                           "--systemd-units", str(out)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["gitopsctl-sync.service", "gitopsctl-sync.timer"]
