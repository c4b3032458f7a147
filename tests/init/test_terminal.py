"""init asks a person at a terminal (a real pseudo-terminal here), and nobody else."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

from tests.init.layouts import compose_layout, gitopsctl

QUESTION = "Write "


def on_terminal(*args: str, cwd, answer: str | None, timeout: float = 120) -> tuple[int, str]:
    """Run gitopsctl with stdin, stdout and stderr on a pty; type `answer` when it asks."""
    master, slave = os.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITOPSCTL_")}
    env.update(TERM="xterm", COLUMNS="120")
    proc = subprocess.Popen([sys.executable, "-m", "gitopsctl", *args], cwd=cwd, env=env,
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    seen, answered = b"", False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:      # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            if answer is not None and not answered and QUESTION.encode() in seen \
                    and seen.rstrip().endswith(b":"):
                os.write(master, answer.encode() + b"\r")
                answered = True
            if proc.poll() is not None and not ready:
                break
        code = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, seen.decode("utf-8", "replace")


def test_on_a_terminal_it_shows_the_proposal_and_asks_no_writes_nothing(tmp_path):
    repo = compose_layout(tmp_path / "vm-only")
    code, output = on_terminal("init", cwd=repo, answer="n")
    assert QUESTION + str(repo / "gitopsctl.yaml") in output
    assert "compose_file: stack/compose.yaml" in output          # the proposal, before the question
    assert code == 1
    assert "nothing written" in output
    assert not (repo / "gitopsctl.yaml").exists()


def test_on_a_terminal_the_default_answer_writes(tmp_path):
    repo = compose_layout(tmp_path / "vm-only")
    code, output = on_terminal("init", cwd=repo, answer="")
    assert QUESTION in output and "[Y/n]" in output
    assert code == 0, output
    assert (repo / "gitopsctl.yaml").is_file()


def test_yes_skips_the_question_on_a_terminal(tmp_path):
    repo = compose_layout(tmp_path / "vm-only")
    code, output = on_terminal("init", "--yes", cwd=repo, answer=None)
    assert code == 0, output
    assert QUESTION not in output
    assert (repo / "gitopsctl.yaml").is_file()


def test_without_a_terminal_it_asks_nothing_and_finishes(tmp_path):
    repo = compose_layout(tmp_path / "vm-only")
    # stdin is a pipe closed at once: any question would read EOF or hang until the timeout
    result = subprocess.run([sys.executable, "-m", "gitopsctl", "init"], cwd=repo, input="",
                            capture_output=True, text=True, timeout=120,
                            env={k: v for k, v in os.environ.items()
                                 if not k.startswith("GITOPSCTL_")})
    assert result.returncode == 0, result.stderr
    assert QUESTION not in result.stdout + result.stderr
    assert (repo / "gitopsctl.yaml").is_file()
    devnull = gitopsctl("init", "--dry-run", cwd=repo)         # stdin from /dev/null
    assert devnull.returncode == 0 and QUESTION not in devnull.stdout + devnull.stderr


def test_with_stdin_closed_altogether_it_asks_nothing_and_writes(tmp_path):
    repo = compose_layout(tmp_path / "vm-only")
    result = subprocess.run([sys.executable, "-m", "gitopsctl", "init"], cwd=repo,
                            capture_output=True, text=True, timeout=120,
                            preexec_fn=lambda: os.close(0),
                            env={k: v for k, v in os.environ.items()
                                 if not k.startswith("GITOPSCTL_")})
    assert result.returncode == 0, result.stderr
    assert QUESTION not in result.stdout + result.stderr
    assert (repo / "gitopsctl.yaml").is_file()
