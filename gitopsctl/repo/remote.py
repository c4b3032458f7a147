"""Talking to the remote: fetch, fast-forward, and pushes that never force.

A rejected push is fetched, rebased (only our unpushed commits move) or rebuilt on the
new tip, and retried a bounded number of times; every fetch and push has a deadline.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gitopsctl.errors import ExternalError
from gitopsctl.repo.revs import current_branch, head, is_ancestor, resolve_commit, tracking_ref
from gitopsctl.repo.runner import NETWORK_TIMEOUT, run, text

# stderr phrases of a push refused because the branch moved (or a concurrent ref update)
_RETRYABLE_PUSH = ("non-fast-forward", "fetch first", "cannot lock ref", "failed to update ref",
                   "incorrect old value")


@dataclass(frozen=True)
class PushResult:
    attempts: int
    rebased: int
    head: str


class PushRejected(ExternalError):
    """The remote refused the push for a reason other than the branch having moved."""

    kind = "push-rejected"


def fetch(root: Path | str, remote: str, branch: str, *,
          timeout: float = NETWORK_TIMEOUT, meanwhile: Callable[[], None] | None = None) -> str:
    """Fetch `branch` from `remote` into its tracking ref; returns the remote tip's SHA.

    `meanwhile` runs on this thread while git talks to the remote."""
    ref = tracking_ref(remote, branch)
    run(root, ["fetch", "--quiet", "--no-tags", remote, f"+refs/heads/{branch}:{ref}"],
        timeout=timeout, meanwhile=meanwhile)
    return resolve_commit(root, ref)


def fast_forward(root: Path | str, target: str) -> str:
    """Move the checked-out branch to `target` if that is a fast-forward; returns HEAD."""
    run(root, ["merge", "--quiet", "--ff-only", target])
    return head(root)


def follow_remote(root: Path | str, remote: str, branch: str) -> bool:
    """Fast-forward a clean checkout of `branch` to the remote tip; anything else is left alone."""
    if current_branch(root) != branch:
        return False
    if text(root, ["status", "--porcelain", "--untracked-files=no"]):
        return False
    tracking = tracking_ref(remote, branch)
    if not is_ancestor(root, "HEAD", tracking):
        return False
    fast_forward(root, tracking)
    return True


def push_commit(root: Path | str, remote: str, branch: str, commit: str, *,
                timeout: float = NETWORK_TIMEOUT) -> bool:
    """Push `commit` as the new tip of `branch`. Never forces.

    True when accepted; False when refused because the branch moved (build the commit
    again on the new tip); PushRejected for any other refusal (a hook, permissions).
    """
    proc = run(root, ["push", "--porcelain", remote, f"{commit}:refs/heads/{branch}"],
               timeout=timeout, ok_codes=(0, 1, 128))
    if proc.returncode == 0:
        run(root, ["update-ref", tracking_ref(remote, branch), commit])
        return True
    said = (proc.stderr + b"\n" + proc.stdout).decode("utf-8", "replace")
    if any(phrase in said for phrase in _RETRYABLE_PUSH):
        return False
    lines = [line.strip() for line in said.splitlines()
             if line.strip() and not line.startswith(("To ", "Done"))]
    raise PushRejected(f"git push to {remote}/{branch} was refused: "
                       + "; ".join(lines[-4:] or ["no reason given"]),
                       hint="the remote refused the commit (a hook, branch protection or "
                            "credentials); nothing was forced")


def push_built(root: Path | str, remote: str, branch: str,
               build: Callable[[str], str | None], *, retries: int,
               progress: Callable[[str], None] | None = None, label: str = "commit",
               timeout: float = NETWORK_TIMEOUT) -> tuple[str | None, int]:
    """Fetch the tip, `build(tip)` a commit on it, push; on a moved branch fetch and build again.

    `build` returns None when nothing is left to do on that tip. Returns (pushed commit
    or None, attempts). `label` names the push for failpoints (`before-push:LABEL`).
    """
    for attempt in range(1, retries + 2):
        tip = fetch(root, remote, branch, timeout=timeout)
        commit = build(tip)
        if commit is None:
            return None, attempt
        from gitopsctl import failpoints

        failpoints.reached(f"before-push:{label}")
        if push_commit(root, remote, branch, commit, timeout=timeout):
            return commit, attempt
        if progress:
            progress(f"push rejected ({remote}/{branch} moved); building again on the new tip "
                     f"(attempt {attempt}/{retries})")
        time.sleep(0.2 * attempt * (0.5 + random.random()))
    raise ExternalError(f"git push to {remote}/{branch} was rejected {retries + 1} times",
                        hint="the branch is moving fast; run again, or raise git.push_retries")


def push_with_retry(root: Path | str, remote: str, branch: str, *, retries: int,
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
    rebased = 0
    for attempt in range(1, retries + 2):
        proc = run(root, ["push", "--quiet", "--porcelain", remote, f"HEAD:refs/heads/{branch}"],
                   timeout=timeout, ok_codes=(0, 1, 128))
        if proc.returncode == 0:
            return PushResult(attempts=attempt, rebased=rebased, head=head(root))
        said = proc.stderr.decode("utf-8", "replace").strip()
        if not any(p in f"{said} {proc.stdout.decode('utf-8', 'replace')}" for p in _RETRYABLE_PUSH):
            raise ExternalError(f"git push to {remote} failed: {said or f'exit {proc.returncode}'}",
                                hint="check the remote URL and your credentials")
        if attempt > retries:
            break
        if progress:
            progress(f"push rejected ({remote}/{branch} moved); fetching and rebasing "
                     f"(attempt {attempt}/{retries})")
        fetch(root, remote, branch, timeout=timeout)
        if run(root, ["rebase", "--quiet", tracking_ref(remote, branch)],
               ok_codes=(0, 1, 128)).returncode == 0:
            rebased += 1
        else:
            run(root, ["rebase", "--abort"], ok_codes=(0, 1, 128))
            if on_conflict is None:
                raise ExternalError(f"{remote}/{branch} moved and changed the same lines as our "
                                    "commit; the rebase was aborted",
                                    hint="fetch, look at the new commits and run again")
            if not on_conflict():
                return PushResult(attempts=attempt, rebased=rebased, head=head(root))
        # jitter spreads out pushers that were rejected by each other
        time.sleep(backoff * attempt * (0.5 + random.random()))
    raise ExternalError(f"git push to {remote}/{branch} was rejected {retries + 1} times",
                        hint="the branch is moving fast; run again, or raise git.push_retries")
