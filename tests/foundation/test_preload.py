"""gitopsctl.preload: heavy imports on one background thread, waited for before use."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from gitopsctl.preload import Preload


def test_waiting_for_imports_never_started_returns_at_once():
    started = time.monotonic()
    Preload([("json", ("json",))]).wait("json")
    assert time.monotonic() - started < 0.5


def test_each_group_is_waited_for_and_a_missing_module_does_not_hang(tmp_path):
    ran = []
    loader = Preload([("missing", ("gitopsctl_no_such_module_x",)), ("json", ("json",))],
                     then=lambda: ran.append("then")).start()
    loader.start()  # a second start changes nothing
    loader.wait("missing")
    loader.wait("json")
    loader.wait("never-named")
    loader._thread.join(5)
    assert ran == ["then"]


def test_the_thread_imports_in_order_and_the_caller_sees_a_whole_module(tmp_path):
    """A slow module the caller waits for is whole when wait() returns, never half-loaded."""
    (tmp_path / "slowmod.py").write_text("import time\ntime.sleep(0.3)\nREADY = True\n")
    code = textwrap.dedent("""
        import sys, time
        from gitopsctl.preload import Preload
        loader = Preload([("slow", ("slowmod",))]).start()
        loader.wait("slow")
        import slowmod
        print(slowmod.READY)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                         env={"PYTHONPATH": f"{tmp_path}:{sys.path[0] or '.'}", "PATH": "/usr/bin:/bin"},
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


def test_shared_modules_are_imported_in_the_callers_thread_before_the_background_one(tmp_path):
    """A package both threads import (the caller meanwhile, the background one as a
    dependency) is loaded by the caller first: two threads never import it at once."""
    (tmp_path / "sharedmod.py").write_text(
        "import threading\nLOADED_BY = threading.current_thread().name\n")
    (tmp_path / "heavymod.py").write_text("import sharedmod\n")
    code = textwrap.dedent("""
        from gitopsctl.preload import Preload
        loader = Preload([("heavy", ("heavymod",))], shared=("sharedmod",)).start()
        import sharedmod
        loader.wait("heavy")
        print(sharedmod.LOADED_BY)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                         env={"PYTHONPATH": f"{tmp_path}:{sys.path[0] or '.'}", "PATH": "/usr/bin:/bin"},
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "MainThread"
