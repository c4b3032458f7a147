"""The sandbox's lifecycle pieces, with real processes and directories (no lab needed)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from hypothesis import given, strategies as st

from gitopsctl.sandbox import leftovers as lab_leftovers
from gitopsctl.sandbox import session
from gitopsctl.sandbox import state as sandbox_state
from tests.sandbox.conftest import processes_naming, run_cli


def test_demo_refuses_a_non_empty_dir_and_leaves_it_untouched(tmp_path, cli_env):
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_bytes(b"mine\n")
    result = run_cli(["sandbox", "demo", "--dir", str(target)], cli_env)
    assert result.returncode == 2
    assert "is not empty" in result.stderr and "hint:" in result.stderr
    assert "Traceback" not in result.stderr
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    assert (target / "notes.txt").read_bytes() == b"mine\n"


def test_negative_stage_delay_is_a_usage_error(tmp_path, cli_env):
    result = run_cli(["-o", "json", "sandbox", "demo", "--stage-delay", "-1"], cli_env)
    assert result.returncode == 2
    assert json.loads(result.stdout)["error"]["kind"] == "usage"


def test_down_with_nothing_running_says_how_to_find_it(tmp_path, cli_env):
    result = run_cli(["sandbox", "down"], cli_env)
    assert result.returncode == 2
    assert "no running sandbox is recorded" in result.stderr and "--dir" in result.stderr
    result = run_cli(["sandbox", "down", "--dir", str(tmp_path)], cli_env)
    assert result.returncode == 2 and "no sandbox state file" in result.stderr


def test_down_reports_a_corrupt_state_file_with_its_location(tmp_path, cli_env):
    (tmp_path / sandbox_state.STATE_FILE).write_text('{"pid": 1,\n  oops}\n')
    result = run_cli(["sandbox", "down", "--dir", str(tmp_path)], cli_env)
    assert result.returncode == 2
    assert f"{tmp_path / sandbox_state.STATE_FILE}:2:" in result.stderr


def test_down_after_up_died_reaps_what_it_left(tmp_path, cli_env):
    """`up` killed with SIGKILL leaves its services; `down` finds them by their directory."""
    workdir = tmp_path / "lab"
    (workdir / "registry").mkdir(parents=True)
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)",
                               str(workdir / "registry" / "config.yml")], start_new_session=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    footprint = lab_leftovers.Footprint(workdir=str(workdir), run_dirs=(), docker_host=None,
                                  engine_owned=True, labels=(), image_prefix=None)
    (workdir / sandbox_state.STATE_FILE).write_text(json.dumps(
        {"pid": gone.pid, "created_workdir": True, "footprint": footprint.to_dict()}))
    try:
        assert processes_naming(workdir)
        result = run_cli(["-o", "json", "sandbox", "down", "--dir", str(workdir)], cli_env)
        assert result.returncode == 0, result.stderr
        doc = json.loads(result.stdout)
        assert doc["was_running"] is False and doc["leftovers"] == []
        assert orphan.wait(timeout=30) is not None
        assert not workdir.exists()
    finally:
        if orphan.poll() is None:
            orphan.kill()


def test_prepare_and_remove_workdir(tmp_path):
    made, created = session.prepare_workdir(tmp_path / "new" / "lab")
    assert created and made.is_dir()
    (made / "x").mkdir()
    (made / "x" / "f").write_text("1")
    session.remove_workdir(made, created)
    assert not made.exists()

    empty = tmp_path / "empty"
    empty.mkdir()
    path, created = session.prepare_workdir(empty)
    assert not created
    (path / "a").write_text("1")
    session.remove_workdir(path, created)
    assert path.is_dir() and list(path.iterdir()) == []  # the user's directory stays

    temp, created = session.prepare_workdir(None)
    try:
        assert created and temp.name.startswith("gitopsctl-sandbox-")
    finally:
        session.remove_workdir(temp, created)
    assert not temp.exists()


def test_state_file_and_pointer_round_trip(tmp_path):
    environ = {"XDG_STATE_HOME": str(tmp_path / "state")}
    workdir = tmp_path / "lab"
    workdir.mkdir()
    sandbox_state.write_state(workdir, {"pid": 42, "x": "y"}, environ)
    path, state = sandbox_state.find_state(None, environ)
    assert path == workdir / sandbox_state.STATE_FILE and state == {"pid": 42, "x": "y"}
    sandbox_state.clear_state(workdir, environ)
    assert not path.exists() and not sandbox_state.pointer_file(environ).exists()


def test_clear_state_leaves_another_sandboxs_pointer(tmp_path):
    environ = {"XDG_STATE_HOME": str(tmp_path / "state")}
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    sandbox_state.write_state(first, {"pid": 1}, environ)
    sandbox_state.write_state(second, {"pid": 2}, environ)
    sandbox_state.clear_state(first, environ)
    assert sandbox_state.find_state(None, environ)[1] == {"pid": 2}


def test_sigterm_becomes_keyboard_interrupt_and_cleanup_is_shielded(tmp_path):
    script = tmp_path / "child.py"
    marker = tmp_path / "cleaned"
    script.write_text(f"""
import os, signal, time
from gitopsctl.sandbox import leftovers as lab_leftovers
from gitopsctl.sandbox import session
from gitopsctl.sandbox import state as sandbox_state
try:
    with session.interrupts_as_keyboard_interrupt():
        try:
            print("ready", flush=True)
            time.sleep(60)
        finally:
            with session.shielded(lambda m: print(m, flush=True)):
                os.kill(os.getpid(), signal.SIGTERM)  # a second signal during clean-up
                time.sleep(0.2)
                open({str(marker)!r}, "w").write("done")
except KeyboardInterrupt as exc:
    print("interrupted", exc, flush=True)
""")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    proc.terminate()
    out, _ = proc.communicate(timeout=30)
    assert "still cleaning up" in out
    assert "interrupted SIGTERM" in out
    assert marker.read_text() == "done"


@given(st.builds(lab_leftovers.Footprint, workdir=st.text(min_size=1), run_dirs=st.tuples(st.text()),
                 docker_host=st.none() | st.text(), engine_owned=st.booleans(),
                 labels=st.lists(st.text(), max_size=3).map(tuple), image_prefix=st.none() | st.text()))
def test_footprint_survives_the_state_file(footprint):
    assert lab_leftovers.Footprint.from_dict(json.loads(json.dumps(footprint.to_dict()))) == footprint


def test_clean_up_of_a_lab_that_never_started_removes_its_directory():
    """Ctrl-C before the first service started still goes through the one clean-up path."""
    from gitopsctl.commands import Context
    from gitopsctl.sandbox.run import _clean_up, _new_lab

    path, created = session.prepare_workdir(None)
    ctx = Context(repo=path, config_path=path / "gitopsctl.yaml")
    cleanup = _clean_up(ctx, _new_lab(ctx, path, 5.0), path, created, keep=False)
    assert cleanup.leftovers == [] and cleanup.workdir_removed
    assert not path.exists()


def test_leftovers_name_lab_processes_but_not_the_users_sandbox_commands(tmp_path):
    workdir = tmp_path / "lab"
    (workdir / "registry").mkdir(parents=True)
    sleeper = "import time; time.sleep(60)"
    service = subprocess.Popen([sys.executable, "-c", sleeper, str(workdir / "registry" / "config.yml")])
    user = subprocess.Popen([sys.executable, "-c", sleeper, "gitopsctl", "sandbox", "down", "--dir",
                             f"{workdir}/"])
    footprint = lab_leftovers.Footprint(workdir=str(workdir), run_dirs=(), docker_host=None,
                                  engine_owned=True, labels=(), image_prefix=None)
    try:
        deadline = time.monotonic() + 10
        while not lab_leftovers.find_leftovers(footprint, workdir_kept=True) and time.monotonic() < deadline:
            time.sleep(0.05)  # until the children have exec'd
        found = lab_leftovers.find_leftovers(footprint, workdir_kept=True)
        assert [line.split(":")[0] for line in found] == [f"process {service.pid}"]
    finally:
        service.kill(), user.kill()
        service.wait(), user.wait()
    assert lab_leftovers.find_leftovers(footprint, workdir_kept=True) == []
