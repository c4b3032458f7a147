"""The help cache (gitopsctl.helpcache): a cached `--help` is byte for byte what typer prints,
and anything that could change the output, or a damaged or unwritable cache, makes typer
render it again.

Every run is a real process; a hit is told from a miss by whether typer was imported.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import shutil
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import typer

from gitopsctl import cliapp

REPO_ROOT = Path(__file__).resolve().parents[2]
# The entry point as the console script calls it; reports on stderr whether typer was loaded.
ENTRY = ("import atexit, sys\n"
         "atexit.register(lambda: sys.stderr.write('TYPER-LOADED=%s' % ('typer' in sys.modules)))\n"
         "from gitopsctl.cli import main\nmain()\n")
# Typer rendering directly, without the cache: what `--help` printed before the cache existed.
DIRECT = "from gitopsctl.cliapp import app\napp(prog_name='gitopsctl')\n"
COMMANDS = typer.main.get_command(cliapp.app).list_commands(None)


def environment(cache: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GITOPSCTL", "_GITOPSCTL", "COMP_", "_TYPER", "TYPER"))
           and k not in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TERM")}
    env.update(XDG_CACHE_HOME=str(cache), **extra)
    return env


def gitopsctl(args, env, cwd=REPO_ROOT) -> tuple[int, bytes, bool]:
    """(exit code, stdout bytes, whether typer was imported)."""
    result = subprocess.run([sys.executable, "-c", ENTRY, *args], env=env, cwd=cwd,
                            capture_output=True, timeout=60)
    err = result.stderr.decode()
    assert "TYPER-LOADED=" in err, err
    return result.returncode, result.stdout, err.endswith("TYPER-LOADED=True")


def direct(args, env, cwd=REPO_ROOT) -> bytes:
    result = subprocess.run([sys.executable, "-c", DIRECT, *args], env=env, cwd=cwd,
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def entries(cache: Path) -> list[Path]:
    folder = cache / "gitopsctl" / "help"
    return sorted(folder.iterdir()) if folder.exists() else []


def test_every_commands_help_is_unchanged_and_a_hit_is_identical_to_the_miss(tmp_path):
    env = environment(tmp_path / "cache", COLUMNS="80")
    for args in [["--help"], ["-h"]] + [[name, "--help"] for name in COMMANDS] + [["sync", "-h"]]:
        expected = direct(args, env)
        assert gitopsctl(args, env) == (0, expected, True), args  # miss: rendered by typer
        assert gitopsctl(args, env) == (0, expected, False), args  # hit: typer never loaded
    assert len(entries(tmp_path / "cache")) == len(COMMANDS) + 3


def test_the_console_script_serves_the_cache(tmp_path):
    script = Path(sys.executable).parent / "gitopsctl"
    env = environment(tmp_path / "cache")
    first = subprocess.run([script, "bump", "--help"], env=env, capture_output=True, timeout=60)
    again = subprocess.run([script, "bump", "--help"], env=env, capture_output=True, timeout=60)
    assert first.returncode == again.returncode == 0
    assert first.stdout == again.stdout == direct(["bump", "--help"], env)
    assert len(entries(tmp_path / "cache")) == 1


def test_a_changed_width_or_colour_setting_is_a_miss(tmp_path):
    cache = tmp_path / "cache"
    narrow, wide = environment(cache, COLUMNS="60"), environment(cache, COLUMNS="100")
    assert gitopsctl(["stage", "--help"], narrow)[2] is True
    code, out, loaded = gitopsctl(["stage", "--help"], wide)
    assert (code, loaded) == (0, True) and out == direct(["stage", "--help"], wide)
    assert out != gitopsctl(["stage", "--help"], narrow)[1]  # the control: width matters
    for changed in ({"NO_COLOR": "1"}, {"TERM": "dumb"}, {"FORCE_COLOR": "1"},
                    {"GITOPSCTL_NO_COLOR": "1"}):
        env = environment(cache, COLUMNS="100", **changed)
        assert gitopsctl(["stage", "--help"], env) == (0, direct(["stage", "--help"], env), True)
        assert gitopsctl(["stage", "--help"], env)[2] is False


def on_terminal(args, env, columns: int) -> bytes:
    """stdout of a run whose stdout is a terminal `columns` wide."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen([sys.executable, "-c", ENTRY, *args], stdin=slave, stdout=slave,
                            stderr=subprocess.DEVNULL, env=env, cwd=REPO_ROOT)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], deadline - time.monotonic())[0]:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
        proc.wait(timeout=60)
    assert proc.returncode == 0
    return b"".join(chunks)


def test_a_resized_terminal_is_a_miss(tmp_path):
    env = environment(tmp_path / "cache")
    wide = on_terminal(["rollback", "--help"], env, 100)
    narrow = on_terminal(["rollback", "--help"], env, 60)
    assert wide != narrow and len(max(narrow.splitlines(), key=len)) <= 60
    assert on_terminal(["rollback", "--help"], env, 100) == wide
    assert on_terminal(["rollback", "--help"], env, 60) == narrow
    assert len(entries(tmp_path / "cache")) == 2


def test_an_edited_command_or_a_new_version_is_a_miss(tmp_path):
    """A copy of the package stands in for an upgrade: its sources change under the cache."""
    copy = tmp_path / "src" / "gitopsctl"
    shutil.copytree(REPO_ROOT / "gitopsctl", copy, ignore=shutil.ignore_patterns("__pycache__", "data"))
    env = environment(tmp_path / "cache", PYTHONPATH=str(copy.parent))
    before = gitopsctl(["bump", "--help"], env, cwd=tmp_path)[1]
    assert gitopsctl(["bump", "--help"], env, cwd=tmp_path)[2] is False
    app = copy / "cliapp.py"
    app.write_text(app.read_text().replace("Edit image references", "Rewrite image references"))
    code, after, loaded = gitopsctl(["bump", "--help"], env, cwd=tmp_path)
    assert (code, loaded) == (0, True)
    assert after == direct(["bump", "--help"], env, cwd=tmp_path) != before
    assert b"Rewrite image" in after and b"Edit image" in before
    init = copy / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "9'))
    assert gitopsctl(["bump", "--help"], env, cwd=tmp_path) == (0, after, True)


def test_a_source_modified_just_before_the_render_is_not_stored(tmp_path):
    """It may have changed after it was read: print that render, cache a later one."""
    copy = tmp_path / "src" / "gitopsctl"
    shutil.copytree(REPO_ROOT / "gitopsctl", copy, ignore=shutil.ignore_patterns("__pycache__", "data"))
    env = environment(tmp_path / "cache", PYTHONPATH=str(copy.parent))
    (copy / "cliglobals.py").touch()
    first = gitopsctl(["seal", "--help"], env, cwd=tmp_path)
    assert first[:2] == (0, direct(["seal", "--help"], env, cwd=tmp_path)) and first[2] is True
    assert entries(tmp_path / "cache") == []
    settled = time.time() - 10
    os.utime(copy / "cliglobals.py", (settled, settled))
    assert gitopsctl(["seal", "--help"], env, cwd=tmp_path) == (0, first[1], True)
    assert gitopsctl(["seal", "--help"], env, cwd=tmp_path) == (0, first[1], False)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "body", "empty"])
def test_a_damaged_entry_falls_back_to_typer_and_is_repaired(tmp_path, damage):
    env = environment(tmp_path / "cache")
    expected = gitopsctl(["status", "--help"], env)[1]
    [entry] = entries(tmp_path / "cache")
    data = entry.read_bytes()
    entry.write_bytes({"truncate": data[:-40], "garbage": b"\x00\xff" * 50, "empty": b"",
                       "body": data[:-10] + b"X" * 10}[damage])
    assert gitopsctl(["status", "--help"], env) == (0, expected, True)
    assert gitopsctl(["status", "--help"], env) == (0, expected, False)


def test_another_users_entry_is_not_trusted(tmp_path):
    env = environment(tmp_path / "cache")
    expected = gitopsctl(["check", "--help"], env)[1]
    [entry] = entries(tmp_path / "cache")
    if os.getuid() != 0:
        pytest.fail("chown to another user needs root, which this suite runs as")
    os.chown(entry, 4242, 4242)
    assert gitopsctl(["check", "--help"], env) == (0, expected, True)


def test_an_unwritable_cache_never_fails_the_command(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    env = environment(blocker)
    result = subprocess.run([sys.executable, "-m", "gitopsctl", "verify", "--help"], env=env,
                            cwd=REPO_ROOT, capture_output=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == direct(["verify", "--help"], env)


@pytest.mark.parametrize("args,code", [
    (["nosuch", "--help"], 2),          # typer's usage error, exit 2, never stored
    (["bump", "--path", "x", "--help"], 0),  # an option before --help: always typer
    (["-o", "json", "--help"], 0),
])
def test_only_plain_successful_help_requests_are_cached(tmp_path, args, code):
    env = environment(tmp_path / "cache")
    first = gitopsctl(args, env)
    assert first[0] == code and first[2] is True
    assert gitopsctl(args, env) == first
    assert entries(tmp_path / "cache") == []


def test_completion_is_never_answered_from_the_cache(tmp_path):
    env = environment(tmp_path / "cache")
    gitopsctl(["--help"], env)
    completing = environment(tmp_path / "cache", _GITOPSCTL_COMPLETE="complete_bash",
                             COMP_WORDS="gitopsctl --help", COMP_CWORD="1")
    code, out, loaded = gitopsctl(["--help"], completing)
    assert code == 0 and loaded is True and b"Usage" not in out


def test_a_reader_that_went_away_gets_what_typer_gives_it(tmp_path):
    env = environment(tmp_path / "cache")

    def into_closed_pipe() -> tuple[int, bytes]:
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            result = subprocess.run([sys.executable, "-m", "gitopsctl", "--help"], env=env,
                                    cwd=REPO_ROOT, stdout=write_end, stderr=subprocess.PIPE,
                                    timeout=60)
        finally:
            os.close(write_end)
        return result.returncode, result.stderr

    missed = into_closed_pipe()
    assert len(entries(tmp_path / "cache")) == 0  # nothing reached a reader: nothing stored
    gitopsctl(["--help"], env)
    assert into_closed_pipe() == missed == (1, b"")


@pytest.mark.parametrize("module,absent", [
    ("gitopsctl.cli", ("typer", "click", "rich", "gitopsctl.cliapp")),  # what a hit pays for
    ("gitopsctl.cliapp", ("kubernetes", "docker", "fabric", "paramiko", "git", "rich")),
])
def test_what_each_start_up_module_leaves_unloaded(module, absent):
    code = f"import sys, {module}; print(sorted(m for m in {absent!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "[]"
