"""Git as the record: commits with trailers, safe pushes, reverts, and the deploy log.

Small named functions over GitPython's git command wrapper (argument lists, never a
shell). Nothing here force-pushes or rewrites published history: a rejected push is
fetched, rebased (only our unpushed commits move) and retried, a bounded number of times.

Trailer format (see docs/bump-and-check.md and DESIGN.md):

    deploy(frontend): 1a2b3c4 → harbor.lan/homelab/frontend:main-1a2b3c4-1 [skip ci]

    Gitopsctl-Source: <full source sha>
    Gitopsctl-Stage: frontend
    Gitopsctl-Image: harbor.lan/homelab/frontend:main-1a2b3c4-1@sha256:…

    rollback: 1a2b3c4 — frontend CrashLoopBackOff [skip ci]

    Reverts: <D1>, <D2>
    Reason: …
    Evidence: …
    Gitopsctl-Rollback-Of: <source sha>
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from gitopsctl.errors import ExternalError, InputError

SOURCE = "Gitopsctl-Source"
STAGE = "Gitopsctl-Stage"
IMAGE = "Gitopsctl-Image"
ROLLBACK_OF = "Gitopsctl-Rollback-Of"
REVERTS = "Reverts"
REASON = "Reason"
EVIDENCE = "Evidence"

_SHA_RE = re.compile(r"^[0-9a-fA-F]{4,64}$")
_FULL_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_TRAILER_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*): ?(.*)$")
# stderr phrases of a push refused because the branch moved (or a concurrent ref update)
_RETRYABLE_PUSH = ("non-fast-forward", "fetch first", "cannot lock ref", "failed to update ref",
                   "incorrect old value")


@dataclass(frozen=True)
class Author:
    name: str
    email: str


@dataclass(frozen=True)
class DeployRecord:
    """A gitopsctl commit read back from `git log`."""

    commit: str
    kind: str                  # "deploy" or "rollback"
    subject: str
    timestamp: int
    service: str | None = None     # Gitopsctl-Stage
    source: str | None = None      # Gitopsctl-Source (deploys) / Gitopsctl-Rollback-Of
    image: str | None = None
    reverts: tuple[str, ...] = ()
    reason: str | None = None
    trailers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"commit": self.commit, "kind": self.kind, "subject": self.subject,
                "timestamp": self.timestamp, "service": self.service, "source": self.source,
                "image": self.image, "reverts": list(self.reverts), "reason": self.reason}


@dataclass(frozen=True)
class PushResult:
    attempts: int
    rebased: int
    head: str


# ---------------------------------------------------------------- plumbing

def _git_env(author: Author | None = None) -> dict[str, str]:
    env = {"GIT_TERMINAL_PROMPT": "0", "GIT_EDITOR": "true", "GIT_MERGE_AUTOEDIT": "no"}
    if author is not None:
        env.update(GIT_AUTHOR_NAME=author.name, GIT_AUTHOR_EMAIL=author.email,
                   GIT_COMMITTER_NAME=author.name, GIT_COMMITTER_EMAIL=author.email)
    return env


def open_repo(path: Path | str):
    import git

    try:
        return git.Repo(str(path), search_parent_directories=False)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise InputError(f"{path} is not a git repository",
                         hint="run gitopsctl inside the homelab repository, or pass --repo") from None


# A remote that accepts the connection and never answers (a wedged Gitea, a half-open
# connection) would otherwise hold a pipeline forever; git has no deadline of its own.
NETWORK_TIMEOUT = 120.0


def _run(repo, *args: str, author: Author | None = None, timeout: float | None = None) -> str:
    """repo.git.<cmd>(*args) with a clean environment; GitCommandError -> ExternalError.

    With `timeout`, git is killed after that many seconds."""
    import git

    try:
        return repo.git.execute(["git", *args], env={**os.environ, **_git_env(author)},
                                kill_after_timeout=timeout)
    except git.GitCommandError as exc:
        if _timed_out(exc):
            raise _too_slow(args[0], timeout) from None
        raise ExternalError(f"git {args[0]} failed: {_stderr(exc)}",
                            details={"command": ["git", *args]}) from None


def _timed_out(exc) -> bool:
    return "did not complete in" in (getattr(exc, "stderr", "") or "")


def _too_slow(command: str, timeout: float | None) -> ExternalError:
    return ExternalError(f"git {command} did not finish within {timeout:g} s; it was stopped",
                         hint="check that the git remote (git.remote in gitopsctl.yaml) is "
                              "reachable and answering, then run again")


def _stderr(exc) -> str:
    text = (getattr(exc, "stderr", "") or "").strip()
    text = re.sub(r"^stderr: '?", "", text).rstrip("'").strip()
    return text or str(exc)


def is_full_sha(text) -> bool:
    """A whole lowercase SHA-1 commit id, as git prints it."""
    return isinstance(text, str) and _FULL_SHA_RE.match(text) is not None


def validate_sha(text: str) -> str:
    if not isinstance(text, str) or not _SHA_RE.match(text):
        raise InputError(f"{text!r} is not a commit SHA",
                         hint="pass 4 to 40 hex digits, e.g. the output of `git rev-parse HEAD`")
    return text.lower()


def resolve_commit(repo_path: Path | str, rev: str) -> str:
    """The full SHA of `rev` (which must be a commit in this repository)."""
    import git

    repo = open_repo(repo_path)
    try:
        return repo.git.rev_parse("--verify", "--quiet", f"{rev}^{{commit}}").strip()
    except git.GitCommandError:
        raise InputError(f"commit {rev} is not in {repo_path}",
                         hint="fetch first (`git fetch`), or check the SHA") from None


def resolve_source(repo_path: Path | str, source: str | None) -> str:
    """The full SHA of an app commit given as --source (validated), or of HEAD."""
    return resolve_commit(repo_path, validate_sha(source) if source else "HEAD")


def head(repo_path: Path | str) -> str:
    return resolve_commit(repo_path, "HEAD")


def is_ancestor(repo_path: Path | str, ancestor: str, descendant: str) -> bool:
    """`git merge-base --is-ancestor`; a commit counts as its own ancestor, as in git."""
    import git

    repo = open_repo(repo_path)
    try:
        repo.git.merge_base("--is-ancestor", ancestor, descendant)
        return True
    except git.GitCommandError as exc:
        if exc.status == 1:
            return False
        raise InputError(f"cannot compare {ancestor} and {descendant}: {_stderr(exc)}",
                         hint="are both commits in this repository? try `git fetch`") from None


def changed_paths(repo_path: Path | str, paths: Iterable[str]) -> list[str]:
    """Which of `paths` differ from HEAD (modified, added or deleted)."""
    repo = open_repo(repo_path)
    out = _run(repo, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--", *paths)
    return [entry[3:] for entry in out.split("\0") if entry]


# ---------------------------------------------------------------- writing

def format_message(subject: str, trailers: Sequence[tuple[str, str]], body: str = "") -> str:
    """Subject, optional body, then one `Key: value` trailer per line.

    Every part is redacted: a commit is pushed and kept forever, so no secret that
    reached evidence or a reason may be written into one.
    """
    from gitopsctl.redact import redact

    subject, body = redact(subject), redact(body)
    trailers = [(key, redact(value)) for key, value in trailers]
    parts = [subject.strip()]
    if body.strip():
        parts.append(body.strip())
    if trailers:
        lines = []
        for key, value in trailers:
            if not _TRAILER_RE.match(f"{key}: x") or "\n" in value and not _indented(value):
                raise ValueError(f"bad trailer {key!r}")
            lines.append(f"{key}: {value}")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _indented(value: str) -> bool:
    """Multi-line trailer values continue on lines starting with a space (git's rule)."""
    return all(line.startswith(" ") for line in value.split("\n")[1:])


def commit_paths(repo_path: Path | str, paths: Sequence[str], message: str,
                 author: Author) -> str | None:
    """Commit exactly `paths` (repo-relative) with `message`; None when nothing changed.

    Other staged or modified files are left alone. Hooks are not run: these commits
    are made by automation and their content was validated before writing.
    """
    repo = open_repo(repo_path)
    if not changed_paths(repo_path, paths):
        return None
    _run(repo, "add", "--", *paths)
    _run(repo, "commit", "--quiet", "--no-verify", "--cleanup=whitespace", "-m", message,
         "--only", "--", *paths, author=author)
    return repo.head.commit.hexsha


def _newest_first(repo_path: Path | str, commits: Sequence[str]) -> list[str]:
    """Descendants before their ancestors (timestamps tie within a second; history does not)."""
    import functools

    def compare(a: str, b: str) -> int:
        if a == b:
            return 0
        if is_ancestor(repo_path, a, b):
            return 1
        if is_ancestor(repo_path, b, a):
            return -1
        return 0

    return sorted(dict.fromkeys(commits), key=functools.cmp_to_key(compare))


def reset_last_commit(repo_path: Path | str) -> None:
    """Drop our own unpushed HEAD commit, keeping unrelated local changes (`reset --keep`)."""
    repo = open_repo(repo_path)
    _run(repo, "reset", "--quiet", "--keep", "HEAD~1")


def fetch(repo_path: Path | str, remote: str, branch: str, *,
          timeout: float = NETWORK_TIMEOUT, meanwhile: Callable[[], None] | None = None) -> str:
    """Fetch `branch` from `remote`; returns the remote tip's SHA.

    `meanwhile` runs on this thread while git talks to the remote."""
    _plumb(repo_path, ["fetch", "--quiet", "--no-tags", remote,
                       f"+refs/heads/{branch}:refs/remotes/{remote}/{branch}"],
           timeout=timeout, meanwhile=meanwhile)
    out = _plumb(repo_path, ["rev-parse", "--verify", "--quiet",
                             f"refs/remotes/{remote}/{branch}^{{commit}}"]).stdout
    return out.decode().strip()


def fast_forward(repo_path: Path | str, remote: str, branch: str) -> str:
    """Move the local branch to the fetched remote tip if that is a fast-forward."""
    repo = open_repo(repo_path)
    _run(repo, "merge", "--quiet", "--ff-only", f"refs/remotes/{remote}/{branch}")
    return repo.head.commit.hexsha


def push_with_retry(repo_path: Path | str, remote: str, branch: str, *, retries: int,
                    on_conflict: Callable[[], bool] | None = None,
                    progress: Callable[[str], None] | None = None,
                    backoff: float = 0.2, timeout: float = NETWORK_TIMEOUT) -> PushResult:
    """Push HEAD to remote/branch. Never forces.

    When the push is refused because the branch moved: fetch, rebase our unpushed commits
    onto the new tip and push again, at most `retries` times. If the rebase conflicts it
    is aborted and `on_conflict()` may redo the work on top of the new tip (it returns
    False when nothing is left to push); without it the conflict is an ExternalError.
    Each push and fetch is stopped after `timeout` seconds.
    """
    import git

    repo = open_repo(repo_path)
    rebased = 0
    for attempt in range(1, retries + 2):
        try:
            repo.git.execute(["git", "push", "--quiet", "--porcelain", remote,
                              f"HEAD:refs/heads/{branch}"], env={**os.environ, **_git_env()},
                             kill_after_timeout=timeout)
            return PushResult(attempts=attempt, rebased=rebased, head=repo.head.commit.hexsha)
        except git.GitCommandError as exc:
            if _timed_out(exc):
                raise _too_slow("push", timeout) from None
            message = f"{_stderr(exc)} {exc.stdout or ''}"
            if not any(phrase in message for phrase in _RETRYABLE_PUSH):
                raise ExternalError(f"git push to {remote} failed: {_stderr(exc)}",
                                    hint="check the remote URL and your credentials") from None
            if attempt > retries:
                break
        if progress:
            progress(f"push rejected ({remote}/{branch} moved); fetching and rebasing "
                     f"(attempt {attempt}/{retries})")
        fetch(repo_path, remote, branch, timeout=timeout)
        try:
            repo.git.execute(["git", "rebase", "--quiet", f"refs/remotes/{remote}/{branch}"],
                             env={**os.environ, **_git_env()})
            rebased += 1
        except git.GitCommandError:
            try:
                repo.git.rebase("--abort")
            except git.GitCommandError:
                pass
            if on_conflict is None:
                raise ExternalError(f"{remote}/{branch} moved and changed the same lines as our "
                                    "commit; the rebase was aborted",
                                    hint="fetch, look at the new commits and run again") from None
            if not on_conflict():
                return PushResult(attempts=attempt, rebased=rebased, head=repo.head.commit.hexsha)
        # jitter spreads out pushers that were rejected by each other
        time.sleep(backoff * attempt * (0.5 + random.random()))
    raise ExternalError(f"git push to {remote}/{branch} was rejected {retries + 1} times",
                        hint="the branch is moving fast; run again, or raise git.push_retries")


# ---------------------------------------------------------------- reading

def parse_trailers(message: str) -> dict[str, tuple[str, ...]]:
    """Trailers of the last paragraph, `Key: value`, continuation lines indented."""
    paragraphs = [p for p in re.split(r"\n\s*\n", message.strip()) if p.strip()]
    if len(paragraphs) < 2:
        return {}
    out: dict[str, list[str]] = {}
    last_key: str | None = None
    for line in paragraphs[-1].splitlines():
        match = _TRAILER_RE.match(line)
        if match and not line.startswith(" "):
            last_key = match.group(1)
            out.setdefault(last_key, []).append(match.group(2).strip())
        elif line.startswith(" ") and last_key:
            out[last_key][-1] += "\n" + line.strip()
        else:
            return {}  # not a trailer block
    return {k: tuple(v) for k, v in out.items()}


def _record(commit: str, timestamp: int, message: str) -> DeployRecord | None:
    trailers = parse_trailers(message)
    subject = message.split("\n", 1)[0].strip()
    first = lambda key: trailers.get(key, (None,))[0]  # noqa: E731
    if ROLLBACK_OF in trailers or REVERTS in trailers:
        reverts = tuple(s.strip() for value in trailers.get(REVERTS, ())
                        for s in re.split(r"[,\s]+", value) if s.strip())
        return DeployRecord(commit, "rollback", subject, timestamp, service=first(STAGE),
                            source=first(ROLLBACK_OF), reverts=reverts, reason=first(REASON),
                            trailers=trailers)
    if SOURCE in trailers and STAGE in trailers:
        return DeployRecord(commit, "deploy", subject, timestamp, service=first(STAGE),
                            source=first(SOURCE), image=first(IMAGE), trailers=trailers)
    return None


def deploy_log(repo_path: Path | str, rev: str = "HEAD", *,
               limit: int | None = None) -> list[DeployRecord]:
    """Deploys and rollbacks reachable from `rev`, newest first."""
    import git

    repo = open_repo(repo_path)
    args = ["log", "--first-parent", "--format=%H%x1f%ct%x1f%B%x1e",
            f"--grep=^{SOURCE}:", f"--grep=^{ROLLBACK_OF}:", f"--grep=^{REVERTS}:", rev]
    try:
        out = repo.git.execute(["git", *args], env={**os.environ, **_git_env()})
    except git.GitCommandError as exc:
        if "does not have any commits" in _stderr(exc) or "unknown revision" in _stderr(exc):
            return []
        raise ExternalError(f"git log failed: {_stderr(exc)}") from None
    records: list[DeployRecord] = []
    for chunk in out.split("\x1e"):
        chunk = chunk.strip("\n")
        if not chunk:
            continue
        sha, ts, message = chunk.split("\x1f", 2)
        record = _record(sha, int(ts), message)
        if record is not None:
            records.append(record)
            if limit is not None and len(records) >= limit:
                break
    return records


# ---------------------------------------------------------------- commits off the working tree
#
# stage and rollback never touch the user's working tree or index: they read files from
# the remote tip's tree, build the new commit in a private index (GIT_INDEX_FILE) and push
# the commit object itself. A dirty checkout, staged work or a kill between "write" and
# "commit" therefore cannot leak into, or be mistaken for, a deploy.

LOCAL_TIMEOUT = 60.0
SYMLINK_MODE = "120000"
SUBMODULE_MODE = "160000"


@dataclass(frozen=True)
class TreeFile:
    path: str   # repo-relative, "/"-separated, as git prints it
    mode: str   # 100644, 100755, 120000 (link), 160000 (submodule)
    blob: str

    @property
    def is_link(self) -> bool:
        return self.mode == SYMLINK_MODE


class MissingHistory(InputError):
    """The clone lacks commits an answer depends on (a shallow CI checkout)."""

    kind = "missing-history"

    def __init__(self, what: str):
        super().__init__(f"{what}: this clone is shallow and the history that answers it "
                         "is not here",
                         hint="gitopsctl reads deploys and rollbacks from git log: fetch the full "
                              "history (`git fetch --unshallow`, or `fetch-depth: 0` in the "
                              "checkout step) and run again")


def _plumb(repo_path: Path | str, args: Sequence[str], *, data: bytes | None = None,
           env: Mapping[str, str] | None = None, timeout: float = LOCAL_TIMEOUT,
           ok_codes: tuple[int, ...] = (0,),
           meanwhile: Callable[[], None] | None = None) -> subprocess.CompletedProcess:
    """Run git; `meanwhile` runs on this thread while git works, so slow in-process work
    (importing the target clients) overlaps with it without a second thread: two threads
    importing the same package can see it half-initialised."""
    command = ["git", *args]
    deadline = time.monotonic() + timeout
    proc = subprocess.Popen(command, cwd=str(repo_path),
                            stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **_git_env(), **(env or {})},
                            process_group=0)  # so a stop reaches git's remote helper too
    try:
        if meanwhile is not None:
            meanwhile()
        stdout, stderr = proc.communicate(data, timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise _too_slow(args[0], timeout) from None
    finally:
        if proc.returncode is None:
            _kill_group(proc)
    if proc.returncode not in ok_codes:
        text = stderr.decode("utf-8", "replace").strip()
        raise ExternalError(f"git {args[0]} failed: {text or f'exit {proc.returncode}'}",
                            details={"command": command[:4]})
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def _kill_group(proc: subprocess.Popen) -> None:
    """Stop git and every helper it started; they hold its pipes open until they exit."""
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


def is_shallow(repo_path: Path | str) -> bool:
    out = _plumb(repo_path, ["rev-parse", "--is-shallow-repository"]).stdout
    return out.strip() == b"true"


def tree_files(repo_path: Path | str, rev: str, paths: Sequence[str]) -> list[TreeFile]:
    """Files at or under `paths` (repo-relative) in the tree of `rev`, without following links."""
    if not paths:
        return []
    out = _plumb(repo_path, ["ls-tree", "-r", "-z", "--full-tree", rev, "--", *paths]).stdout
    files = []
    for entry in out.decode("utf-8", "surrogateescape").split("\0"):
        if not entry:
            continue
        meta, path = entry.split("\t", 1)
        mode, kind, blob = meta.split()
        if kind == "blob":
            files.append(TreeFile(path, mode, blob))
    return files


def read_blobs(repo_path: Path | str, blobs: Iterable[str]) -> dict[str, bytes]:
    """Contents of blobs by id, in one `git cat-file --batch`."""
    wanted = list(dict.fromkeys(blobs))
    if not wanted:
        return {}
    out = _plumb(repo_path, ["cat-file", "--batch"], data="".join(b + "\n" for b in wanted).encode()).stdout
    result: dict[str, bytes] = {}
    pos = 0
    for blob in wanted:
        header_end = out.index(b"\n", pos)
        header = out[pos:header_end].decode()
        parts = header.split()
        if len(parts) < 3:
            raise ExternalError(f"git cat-file: object {blob} is missing")
        size = int(parts[2])
        start = header_end + 1
        result[blob] = out[start:start + size]
        pos = start + size + 1
    return result


def _with_private_index(repo_path: Path | str, parent: str, work: Callable[[dict], None],
                        message: str, author: Author) -> str:
    """Load `parent`'s tree into a throwaway index, let `work(env)` change it, commit."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gitopsctl-index-") as tmp:
        env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
        _plumb(repo_path, ["read-tree", parent], env=env)
        work(env)
        from gitopsctl import failpoints

        failpoints.reached("index-written")
        tree = _plumb(repo_path, ["write-tree"], env=env).stdout.decode().strip()
        if tree == _plumb(repo_path, ["rev-parse", f"{parent}^{{tree}}"]).stdout.decode().strip():
            raise InputError("nothing to commit: the change is already in git")
        commit = _plumb(repo_path, ["commit-tree", tree, "-p", parent, "-F", "-"],
                        data=message.encode(), env=_git_env(author)).stdout
        return commit.decode().strip()


def _stage_files(repo_path: Path | str, files: Mapping[str, tuple[str, bytes]], env: dict) -> None:
    for path, (mode, content) in files.items():
        if mode in (SYMLINK_MODE, SUBMODULE_MODE):
            raise InputError(f"{path}: refusing to replace a link or submodule with file content")
        blob = _plumb(repo_path, ["hash-object", "-w", "--stdin"], data=content).stdout.decode().strip()
        _plumb(repo_path, ["update-index", "--add", "--cacheinfo", f"{mode},{blob},{path}"], env=env)


def commit_files(repo_path: Path | str, parent: str, files: Mapping[str, tuple[str, bytes]],
                 message: str, author: Author) -> str:
    """A commit on `parent` whose tree differs only in `files` {path: (mode, content)}."""
    return _with_private_index(repo_path, parent, lambda env: _stage_files(repo_path, files, env),
                               message, author)


class RevertConflict(ExternalError):
    exit_code = 3
    kind = "revert-conflict"


def revert_onto(repo_path: Path | str, parent: str, commits: Sequence[str], message: str,
                author: Author, extra: Mapping[str, tuple[str, bytes]] | None = None) -> str:
    """One commit on `parent` undoing `commits` (newest first), plus the `extra` file edits."""
    ordered = _newest_first(repo_path, [resolve_commit(repo_path, c) for c in commits])

    def undo(env: dict) -> None:
        for commit in ordered:
            parents = _plumb(repo_path, ["rev-list", "--parents", "-n", "1", commit]).stdout.split()
            if len(parents) < 2:
                if is_shallow(repo_path):
                    raise MissingHistory(f"the parent of deploy commit {commit[:7]} is missing")
                raise RevertConflict(f"{commit[:7]} has no parent to revert to")
            diff = _plumb(repo_path, ["diff", "--binary", "--full-index", "--no-renames",
                                      f"{commit}^", commit]).stdout
            applied = _plumb(repo_path, ["apply", "--cached", "--3way", "-R"], data=diff, env=env,
                             ok_codes=(0, 1))
            if applied.returncode != 0:
                why = applied.stderr.decode("utf-8", "replace").strip().splitlines()
                raise RevertConflict(
                    f"cannot revert {commit[:7]}: a later commit changed the same lines "
                    f"({why[0] if why else 'conflict'})",
                    hint="nothing was pushed; look at `git log -p` of those files, revert by "
                         "hand (git revert), push, then run `gitopsctl verify`")
        if extra:
            _stage_files(repo_path, extra, env)

    return _with_private_index(repo_path, parent, undo, message, author)


class PushRejected(ExternalError):
    """The remote refused the push for a reason other than the branch having moved."""

    kind = "push-rejected"


def push_commit(repo_path: Path | str, remote: str, branch: str, commit: str, *,
                timeout: float = NETWORK_TIMEOUT) -> bool:
    """Push `commit` as the new tip of `branch`. Never forces.

    True when accepted; False when refused because the branch moved (build the commit
    again on the new tip); PushRejected for any other refusal (a hook, permissions).
    """
    proc = _plumb(repo_path, ["push", "--porcelain", remote, f"{commit}:refs/heads/{branch}"],
                  timeout=timeout, ok_codes=(0, 1, 128))
    if proc.returncode == 0:
        _plumb(repo_path, ["update-ref", f"refs/remotes/{remote}/{branch}", commit])
        return True
    text = (proc.stderr + b"\n" + proc.stdout).decode("utf-8", "replace")
    if any(phrase in text for phrase in _RETRYABLE_PUSH):
        return False
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.startswith(("To ", "Done"))]
    raise PushRejected(f"git push to {remote}/{branch} was refused: "
                       + "; ".join(lines[-4:] or ["no reason given"]),
                       hint="the remote refused the commit (a hook, branch protection or "
                            "credentials); nothing was forced")


def push_built(repo_path: Path | str, remote: str, branch: str,
               build: Callable[[str], str | None], *, retries: int,
               progress: Callable[[str], None] | None = None, label: str = "commit",
               timeout: float = NETWORK_TIMEOUT) -> tuple[str | None, int]:
    """Fetch the tip, `build(tip)` a commit on it, push; on a moved branch fetch and build again.

    `build` returns None when nothing is left to do on that tip. Returns (pushed commit
    or None, attempts). `label` names the push for failpoints (`before-push:LABEL`).
    """
    for attempt in range(1, retries + 2):
        tip = fetch(repo_path, remote, branch, timeout=timeout)
        commit = build(tip)
        if commit is None:
            return None, attempt
        from gitopsctl import failpoints

        failpoints.reached(f"before-push:{label}")
        if push_commit(repo_path, remote, branch, commit, timeout=timeout):
            return commit, attempt
        if progress:
            progress(f"push rejected ({remote}/{branch} moved); building again on the new tip "
                     f"(attempt {attempt}/{retries})")
        time.sleep(0.2 * attempt * (0.5 + random.random()))
    raise ExternalError(f"git push to {remote}/{branch} was rejected {retries + 1} times",
                        hint="the branch is moving fast; run again, or raise git.push_retries")


def follow_remote(repo_path: Path | str, remote: str, branch: str) -> bool:
    """Fast-forward a clean checkout of `branch` to the remote tip; anything else is left alone."""
    head_ref = _plumb(repo_path, ["symbolic-ref", "-q", "HEAD"], ok_codes=(0, 1)).stdout.strip()
    if head_ref != f"refs/heads/{branch}".encode():
        return False
    dirty = _plumb(repo_path, ["status", "--porcelain", "--untracked-files=no"]).stdout.strip()
    if dirty:
        return False
    tracking = f"refs/remotes/{remote}/{branch}"
    if not is_ancestor(repo_path, "HEAD", tracking):
        return False
    _plumb(repo_path, ["merge", "--quiet", "--ff-only", tracking])
    return True


def grep_files(repo_path: Path | str, rev: str, needle: str, globs: Sequence[str]) -> list[str]:
    """Paths of files in the tree of `rev` containing `needle` (a fixed string)."""
    proc = _plumb(repo_path, ["grep", "-l", "-z", "--fixed-strings", "-e", needle, rev, "--",
                              *globs], ok_codes=(0, 1))
    prefix = f"{rev}:"
    return [p[len(prefix):] if p.startswith(prefix) else p
            for p in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if p]
