"""gitopsctl.repo against real repositories: trailers, deploy log, reverts, pushes."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import tarfile
import threading
import time

import pytest

from gitopsctl.deploy.state import read_state

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


# ---------------------------------------------------------------- the named functions build and sync use


def test_resolve_source_is_the_one_resolver_for_a_short_sha_head_and_bad_input(git_remote, tmp_path):
    first = repo.head(git_remote.work)
    second = git_remote.commit_all("next")
    assert repo.resolve_source(git_remote.work, first[:7].upper()) == first
    assert repo.resolve_source(git_remote.work, None) == second
    with pytest.raises(InputError) as info:
        repo.resolve_source(git_remote.work, "HEAD~1", option="--source")
    assert info.value.message == "--source 'HEAD~1' is not a commit SHA"
    with pytest.raises(InputError, match="is not in"):
        repo.resolve_source(git_remote.work, "0123abcd")
    empty = tmp_path / "empty"
    git(tmp_path, "init", "-q", str(empty))
    with pytest.raises(InputError, match="has no commits yet"):
        repo.resolve_source(empty, None)


def test_find_commit_answers_none_and_never_reads_a_revision_as_an_option(git_remote):
    assert repo.find_commit(git_remote.work, "refs/remotes/origin/main") == git_remote.remote_head()
    assert repo.find_commit(git_remote.work, "refs/remotes/origin/nope") is None
    assert repo.find_commit(git_remote.work, "--all") is None
    blob = git(git_remote.work, "rev-parse", "HEAD:README.md")
    assert repo.find_commit(git_remote.work, blob) is None  # an object, but not a commit


def test_a_directory_that_is_not_itself_a_repository_is_refused(git_remote, tmp_path):
    (git_remote.work / "sub").mkdir()
    for where in (git_remote.work / "sub", tmp_path / "missing"):
        with pytest.raises(InputError) as info:
            repo.head(where)  # git would otherwise use the repository above `sub`
        assert info.value.message == f"{where} is not a git repository"


def test_commit_time_and_remote_url_without_credentials(git_remote):
    sha = repo.head(git_remote.work)
    assert repo.commit_time(git_remote.work, sha[:8]) == int(git(git_remote.work, "log", "-1", "--format=%ct"))
    assert repo.remote_url(git_remote.work, "origin") == str(git_remote.bare)
    git(git_remote.work, "remote", "add", "gitea", "https://robot:s3cret@gitea.lan/homelab.git")
    assert repo.remote_url(git_remote.work, "gitea") == "https://gitea.lan/homelab.git"
    assert repo.remote_url(git_remote.work, "nope") is None


def test_object_type_has_path_and_archive_read_the_commit_not_the_working_tree(git_remote):
    git_remote.write({"app/Dockerfile": "FROM scratch\n", "app/main.txt": "v1\n"})
    sha = git_remote.commit_all("app")
    (git_remote.work / "app" / "main.txt").write_text("dirty\n")
    (git_remote.work / "app" / "untracked.txt").write_text("never committed\n")
    assert repo.object_type(git_remote.work, f"{sha}:app") == "tree"
    assert repo.object_type(git_remote.work, f"{sha}:app/main.txt") == "blob"
    assert repo.object_type(git_remote.work, f"{sha}:nope") is None
    assert repo.has_path(git_remote.work, sha, "app/Dockerfile")
    assert not repo.has_path(git_remote.work, sha, "app/untracked.txt")
    tar = tarfile.open(fileobj=io.BytesIO(repo.archive(git_remote.work, f"{sha}:app")))
    assert sorted(tar.getnames()) == ["Dockerfile", "main.txt"]
    assert tar.extractfile("main.txt").read() == b"v1\n"


def test_archive_over_the_bound_is_refused_before_git_archive_runs(git_remote):
    git_remote.write({"data/blob.bin": b"x" * 20_000})
    sha = git_remote.commit_all("data")
    with pytest.raises(InputError) as info:
        repo.archive(git_remote.work, f"{sha}:data", max_bytes=10_000)
    assert "1 files" in info.value.message and "move large files" in info.value.hint
    assert len(repo.archive(git_remote.work, f"{sha}:data", max_bytes=30_000)) > 20_000


def test_tracked_changes_lists_staged_and_unstaged_edits_not_untracked_files(git_remote):
    git_remote.write({"a.txt": "a\n", "b.txt": "b\n"})
    git_remote.commit_all("two files")
    assert repo.tracked_changes(git_remote.work) == []
    (git_remote.work / "a.txt").write_text("edited\n")
    (git_remote.work / "b.txt").write_text("staged\n")
    git(git_remote.work, "add", "b.txt")
    (git_remote.work / "new.txt").write_text("untracked\n")
    assert repo.tracked_changes(git_remote.work) == ["a.txt", "b.txt"]
    assert sorted(repo.changed_paths(git_remote.work, ["a.txt", "new.txt"])) == ["a.txt", "new.txt"]


def test_fast_forward_moves_forward_only(git_remote, tmp_path):
    other = git_remote.clone(tmp_path / "vm")
    base = repo.head(other)
    newer = git_remote.commit_all("newer")
    git_remote.push()
    assert repo.fetch(other, "origin", "main") == newer
    assert repo.current_branch(other) == "main"
    assert repo.fast_forward(other, newer) == newer
    git(other, "commit", "-q", "--allow-empty", "-m", "local only")
    diverged = git(other, "commit-tree", "-p", base, "-m", "elsewhere", f"{base}^{{tree}}")
    with pytest.raises(ExternalError, match="git merge failed"):
        repo.fast_forward(other, diverged)
    assert repo.is_ancestor(other, newer, "HEAD") and not repo.is_ancestor(other, diverged, "HEAD")


def test_commit_message_reads_a_commit_back(git_remote):
    sha = git_remote.commit_all("subject line\n\nbody")
    assert repo.commit_message(git_remote.work, sha) == "subject line\n\nbody\n"


# ---------------------------------------------------------------- deadlines kill the whole process group


def _processes_with(marker: str) -> dict[int, tuple[str, int]]:
    """pid -> (state, process group) of live processes whose command line holds `marker`."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if marker in cmdline and fields[0] != "Z":
            found[int(entry)] = (fields[0], int(fields[2]))
    return found


def _group_members(group: int) -> list[int]:
    """Live (not zombie) processes in process group `group`."""
    members = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            members.append(int(entry))
    return members


def test_a_fetch_past_its_deadline_kills_git_and_its_remote_helper_as_one_group(git_remote, silent_remote):
    git(git_remote.work, "remote", "add", "silent", silent_remote)
    seen: dict[int, tuple[str, int]] = {}

    def meanwhile() -> None:  # runs while git is connected and waiting
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(seen) < 2:
            seen.update(_processes_with(silent_remote))
            time.sleep(0.05)

    with pytest.raises(ExternalError, match="did not finish within 2 s"):
        repo.fetch(git_remote.work, "silent", "main", timeout=2, meanwhile=meanwhile)
    groups = {group for _, group in seen.values()}
    assert len(seen) >= 2, f"expected git remote-http and git-remote-http, saw {seen}"
    assert len(groups) == 1 and groups != {os.getpgrp()}, "git runs in a process group of its own"
    assert not set(_processes_with(silent_remote)) & set(seen), "a helper outlived the deadline"
    assert not _group_members(groups.pop()), "git fetch (the group's leader) outlived it"


def test_a_local_git_past_its_deadline_is_killed_with_the_hooks_it_started(git_remote, tmp_path):
    # core.fsmonitor runs a hook from `git status`; one that never answers stands for any
    # local git stuck on a lock or a dead filesystem
    marker = f"{time.monotonic_ns()}"
    hook = tmp_path / "fsmonitor-hook"
    hook.write_text(f"#!/bin/sh\nexec sleep 60 {marker}\n")
    hook.chmod(0o755)
    git(git_remote.work, "config", "core.fsmonitor", str(hook))
    from gitopsctl.repo import runner

    start = time.monotonic()
    with pytest.raises(ExternalError) as info:
        runner.run(git_remote.work, ["status", "--porcelain"], timeout=1)
    assert 1 <= time.monotonic() - start < 10
    assert info.value.message == "git status did not finish within 1 s; it was stopped"
    assert "lock" in info.value.hint
    assert not _processes_with(f"sleep 60 {marker}"), "the hook outlived git's deadline"
