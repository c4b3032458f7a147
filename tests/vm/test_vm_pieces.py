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
from gitopsctl.agent.envfile import env_line as _env_line
from gitopsctl.errors import ConfigError, InputError
from gitopsctl.systemd import render_units, write_units
from gitopsctl.targets.vm import sync_command, validate_revision

GITOPSCTL = str(Path(sys.executable).parent / "gitopsctl")
shas = st.text(alphabet="0123456789abcdef", min_size=7, max_size=40)
paths = st.text(alphabet=st.characters(blacklist_characters="\x00\n\r", blacklist_categories=("Cs",)),
                min_size=1, max_size=40).map(lambda s: "/" + s)


@given(checkout=paths, sha=shas, wait=st.floats(min_value=0.1, max_value=1e5))
def test_remote_command_survives_the_remote_shell_intact(checkout, sha, wait):
    line = sync_command("/opt/gitopsctl/bin/gitopsctl", checkout, sha, wait, "homelab-vm")
    assert shlex.split(line) == ["/opt/gitopsctl/bin/gitopsctl", "--repo", checkout, "--output",
                                 "json", "sync", "--target", "homelab-vm", "--revision", sha,
                                 "--wait-timeout", str(min(7200, max(1, int(round(wait)))))]


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


def _v2(tmp_path: Path, services: str):
    path = tmp_path / "v2.yaml"
    path.write_text(textwrap.dedent("""\
        version: 2
        registry: {url: 127.0.0.1:5000, project: homelab, insecure: true}
        targets:
          box: {kind: vm, host: 127.0.0.2, user: deploy, compose_file: deploy/compose.yml}
        services:
        """) + textwrap.indent(textwrap.dedent(services), "  "))
    return config_mod.load(path, environ={})


def test_which_compose_services_each_service_is_judged_by(tmp_path):
    from gitopsctl.composehealth import owned, rules_for

    config = _v2(tmp_path, """\
        api: {image: api, context: a, target: box, policy: "flux-system:api", paths: [deploy],
              compose_services: [api, cache], health: [{tcp: "127.0.0.1:6379"}]}
        worker: {image: w, context: w, target: box, policy: "flux-system:w", paths: [deploy],
                 compose_services: [worker, cron], health: [{compose: worker}]}
        """)
    api, worker = rules_for(config, "box", ["api", "cache", "worker", "db"])
    assert (api.name, api.compose_services, api.named, api.missing) == \
        ("api", ("api", "cache"), frozenset(), ())
    assert [p.kind for p in api.probes] == ["tcp"]
    assert worker.compose_services == ("worker",) and worker.missing == ("cron",)
    assert worker.named == frozenset({"worker"}) and worker.probes == ()
    assert owned([api, worker]) == ["api", "cache", "worker"]   # db: nobody's, not judged


def test_a_service_naming_no_compose_services_owns_the_whole_file(tmp_path):
    from gitopsctl.composehealth import rules_for

    config = _v2(tmp_path, """\
        backend: {image: b, context: b, target: box, policy: "flux-system:b", paths: [deploy]}
        """)
    (backend,) = rules_for(config, "box", ["backend", "db"])
    assert backend.compose_services == ("backend", "db") and backend.probes == ()
    # a v1 file: the backend owns the whole compose file and keeps its health URL
    (v1,) = rules_for(_config(tmp_path), "vm", ["backend"])
    assert v1.compose_services == ("backend",)
    assert [(p.kind, p.url) for p in v1.probes] == [("http", "http://127.0.0.1:8080/healthz")]


def test_a_target_failure_fails_every_service_a_service_failure_only_its_own():
    from gitopsctl.targets.vm import RemoteRun
    from gitopsctl.targets.vmreport import service_report, whole_report

    def doc(api_ok: bool, up_ok: bool) -> dict:
        checks = [{"name": "api: http", "ok": api_ok, "message": "api says"},
                  {"name": "worker: compose", "ok": True, "message": "worker runs"}]
        if not up_ok:
            checks.insert(0, {"name": "compose-up", "ok": False, "message": "compose up exited 1"})
        healthy = api_ok and up_ok
        return {"healthy": healthy, "revision": "a" * 40,
                "reason": "" if healthy else ("api: down" if not api_ok else "docker compose up failed"),
                "health": {"checks": checks},
                "services": [{"name": "api", "healthy": api_ok, "reason": "" if api_ok else "down",
                              "checks": [{"name": "http", "ok": api_ok, "message": "api says"}]},
                             {"name": "worker", "healthy": True, "reason": "",
                              "checks": [{"name": "compose", "ok": True, "message": "worker runs"}]}]}

    one_down = whole_report("box", RemoteRun(document=doc(False, False), exit_code=1), "a" * 12)
    assert not one_down.healthy and one_down.reason == "api: down"
    assert service_report(one_down, "worker").healthy            # up failed because of the api
    api = service_report(one_down, "api")
    assert not api.healthy and api.reason == "api: down" and api.checks[0].name == "api: http"

    target_down = whole_report("box", RemoteRun(document=doc(True, False), exit_code=1), "a" * 12)
    worker = service_report(target_down, "worker")
    assert not worker.healthy and worker.reason == "worker: docker compose up failed"
    assert worker.checks[0].name == "compose-up"

    elsewhere = whole_report("box", RemoteRun(document=doc(True, True), exit_code=0), "b" * 12)
    assert not elsewhere.healthy and not service_report(elsewhere, "worker").healthy
    assert "expected bbbbbbbbbbbb" in service_report(elsewhere, "worker").reason
