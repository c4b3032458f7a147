"""gitopsctl.repo against real repositories: trailers, deploy log, reverts, pushes."""

from __future__ import annotations

import socket
import subprocess
import threading
import time

import pytest

from gitopsctl.deploys import read_state

from gitopsctl import repo
from gitopsctl.errors import ExternalError, InputError
from gitopsctl.sandbox.lab.gitremote import git

AUTHOR = repo.Author("gitopsctl", "gitopsctl@homelab.lan")


def deploy(remote, service: str, source: str, image: str) -> str:
    path = f"{service}.txt"
    (remote.work / path).write_text(image + "\n")
    message = repo.format_message(f"deploy({service}): {source[:7]} → {image} [skip ci]",
                                  [(repo.SOURCE, source), (repo.STAGE, service), (repo.IMAGE, image)])
    return repo.commit_paths(remote.work, [path], message, AUTHOR)


def revert_here(work, commits, message: str) -> str:
    """repo.revert_onto HEAD, then move the clone there (stage and rollback push it instead)."""
    sha = repo.revert_onto(work, repo.head(work), commits, message, AUTHOR)
    git(work, "merge", "-q", "--ff-only", sha)
    return sha


def test_format_and_parse_trailers_round_trip():
    message = repo.format_message("subject", [("Reverts", "a, b"), ("Evidence", "line one\n line two")],
                                  body="why it happened")
    assert message == "subject\n\nwhy it happened\n\nReverts: a, b\nEvidence: line one\n line two\n"
    assert repo.parse_trailers(message) == {"Reverts": ("a, b",), "Evidence": ("line one\nline two",)}
    assert repo.parse_trailers("just a subject") == {}
    assert repo.parse_trailers("subject\n\nprose: with a colon\nand more prose") == {}


def test_commit_paths_commits_only_those_paths(git_remote):
    (git_remote.work / "a.txt").write_text("a\n")
    (git_remote.work / "b.txt").write_text("b\n")
    sha = repo.commit_paths(git_remote.work, ["a.txt"], "add a\n", AUTHOR)
    assert git(git_remote.work, "show", "--name-only", "--format=", sha) == "a.txt"
    assert git(git_remote.work, "status", "--porcelain") == "?? b.txt"
    assert repo.commit_paths(git_remote.work, ["a.txt"], "again\n", AUTHOR) is None


def test_deploy_log_latest_deploy_and_revert(git_remote):
    s1 = git_remote.commit_all("app v1")
    d1 = deploy(git_remote, "frontend", s1, "harbor.lan/homelab/frontend:v1")
    s2 = git_remote.commit_all("app v2")
    d2 = deploy(git_remote, "frontend", s2, "harbor.lan/homelab/frontend:v2")
    d3 = deploy(git_remote, "backend", s2, "harbor.lan/homelab/backend:v2")
    log = repo.deploy_log(git_remote.work)
    assert [(r.kind, r.service, r.source) for r in log] == [
        ("deploy", "backend", s2), ("deploy", "frontend", s2), ("deploy", "frontend", s1)]
    assert read_state(git_remote.work, "HEAD").live("frontend").commit == d2

    message = repo.format_message(f"rollback: {s2[:7]} — frontend CrashLoopBackOff [skip ci]",
                                  [(repo.REVERTS, f"{d2}, {d3}"), (repo.REASON, "CrashLoopBackOff"),
                                   (repo.ROLLBACK_OF, s2)])
    rollback = revert_here(git_remote.work, [d2, d3], message)
    assert (git_remote.work / "frontend.txt").read_text() == "harbor.lan/homelab/frontend:v1\n"
    assert not (git_remote.work / "backend.txt").exists()
    latest = repo.deploy_log(git_remote.work)[0]
    assert latest.kind == "rollback" and latest.commit == rollback
    assert latest.reverts == (d2, d3) and latest.source == s2
    assert read_state(git_remote.work, "HEAD").live("frontend").commit == d1
    assert read_state(git_remote.work, "HEAD").live("backend") is None
    assert git(git_remote.work, "rev-list", "--count", "HEAD") == "7"  # history kept, nothing rewritten


def test_revert_conflict_aborts_and_leaves_the_tree_clean(git_remote):
    s1 = git_remote.commit_all("app v1")
    d1 = deploy(git_remote, "frontend", s1, "v1")
    deploy(git_remote, "frontend", s1, "v2")
    head = repo.head(git_remote.work)
    with pytest.raises(ExternalError):
        revert_here(git_remote.work, [d1], "revert\n")
    assert repo.head(git_remote.work) == head
    assert git(git_remote.work, "status", "--porcelain") == ""


def test_is_ancestor_and_sha_validation(git_remote):
    first = repo.head(git_remote.work)
    second = git_remote.commit_all("next")
    assert repo.is_ancestor(git_remote.work, first, second)
    assert not repo.is_ancestor(git_remote.work, second, first)
    assert repo.is_ancestor(git_remote.work, first, first)
    assert repo.resolve_commit(git_remote.work, second[:8]) == second
    with pytest.raises(InputError):
        repo.validate_sha("HEAD; rm -rf /")
    with pytest.raises(InputError):
        repo.resolve_commit(git_remote.work, "deadbeef")


def test_push_retries_are_bounded_and_never_force(git_remote, tmp_path):
    other = git_remote.clone(tmp_path / "other")
    git(other, "commit", "-q", "--allow-empty", "-m", "theirs")
    git(other, "push", "-q", "origin", "HEAD:refs/heads/main")
    theirs = git(other, "rev-parse", "HEAD")
    git_remote.commit_all("ours")
    with pytest.raises(ExternalError) as info:
        repo.push_with_retry(git_remote.work, "origin", "main", retries=0)
    assert "rejected 1 times" in info.value.message
    assert git_remote.remote_head() == theirs
    result = repo.push_with_retry(git_remote.work, "origin", "main", retries=1, backoff=0)
    assert result.attempts == 2 and result.rebased == 1
    assert git(git_remote.bare, "log", "--format=%s", "-2", "main").splitlines() == ["ours", "theirs"]


def test_push_refused_by_a_hook_is_not_retried(git_remote):
    hook = git_remote.bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'protected branch' >&2\nexit 1\n")
    hook.chmod(0o755)
    git_remote.commit_all("ours")
    with pytest.raises(ExternalError) as info:
        repo.push_with_retry(git_remote.work, "origin", "main", retries=5)
    assert "protected branch" in info.value.message or "declined" in info.value.message


@pytest.fixture
def silent_remote():
    """An HTTP git remote on 127.0.0.1 that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def hold() -> None:
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                pass

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/homelab.git"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.mark.parametrize("operation", ["fetch", "push"])
def test_a_remote_that_never_answers_is_stopped_at_the_deadline(git_remote, silent_remote, operation):
    git(git_remote.work, "remote", "add", "silent", silent_remote)
    git_remote.commit_all("ours")
    start = time.monotonic()
    with pytest.raises(ExternalError) as info:
        if operation == "fetch":
            repo.fetch(git_remote.work, "silent", "main", timeout=1.5)
        else:
            repo.push_with_retry(git_remote.work, "silent", "main", retries=3, timeout=1.5)
    assert 1.5 <= time.monotonic() - start < 10
    assert info.value.message == f"git {operation} did not finish within 1.5 s; it was stopped"
    assert "git.remote" in info.value.hint
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert silent_remote not in processes, "git or its remote helper outlived the deadline"


def _git_processes(marker: str) -> list[str]:
    lines = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
    return [line for line in lines if marker in line]


def test_fetch_runs_meanwhile_on_the_calling_thread_while_git_waits(git_remote, silent_remote):
    # Imports made in a second thread can race the main thread's into a half-initialised
    # package (seen in CI as ImportError from requests.utils); so work overlapped with a
    # fetch runs on the caller's thread, while the git child is still talking to the remote.
    git(git_remote.work, "remote", "add", "silent", silent_remote)
    seen = {}

    def meanwhile() -> None:
        seen["thread"] = threading.current_thread()
        seen["git running"] = _git_processes("fetch --quiet --no-tags silent")
        time.sleep(0.5)

    start = time.monotonic()
    with pytest.raises(ExternalError, match="did not finish within 1.5 s"):
        repo.fetch(git_remote.work, "silent", "main", timeout=1.5, meanwhile=meanwhile)
    assert seen["thread"] is threading.main_thread()
    assert seen["git running"], "meanwhile ran after git had finished, not alongside it"
    assert 1.5 <= time.monotonic() - start < 10, "the deadline counts the time meanwhile took"
    assert not _git_processes(silent_remote)


def test_a_failure_in_meanwhile_stops_the_fetch(git_remote, silent_remote):
    git(git_remote.work, "remote", "add", "silent", silent_remote)

    def meanwhile() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        repo.fetch(git_remote.work, "silent", "main", timeout=30, meanwhile=meanwhile)
    assert not _git_processes("fetch --quiet --no-tags silent"), "git outlived the failed caller"


def test_fetch_returns_the_remote_tip_after_meanwhile(git_remote):
    git_remote.commit_all("ours")
    git_remote.push()
    calls = []
    tip = repo.fetch(git_remote.work, "origin", "main", meanwhile=lambda: calls.append(1))
    assert tip == git_remote.remote_head() and calls == [1]


def test_revert_orders_by_history_not_by_argument_or_clock(git_remote):
    (git_remote.work / "frontend.txt").write_text("v0\n")
    s0 = git_remote.commit_all("v0")
    d1 = deploy(git_remote, "frontend", s0, "v1")   # same file, same second
    d2 = deploy(git_remote, "frontend", s0, "v2")
    revert_here(git_remote.work, [d1, d2], "rollback\n")
    assert (git_remote.work / "frontend.txt").read_text() == "v0\n"
