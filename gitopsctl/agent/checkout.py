"""The VM's checkout follows the branch: fast-forwards only, local edits are never discarded."""

from __future__ import annotations

from pathlib import Path

from gitopsctl import repo as gitrepo
from gitopsctl.errors import ConfigError, InputError, Superseded, UsageError


def resolve_revision(checkout: Path, tip: str, tracking: str, revision: str | None) -> str:
    """The commit to move to: `revision` (which must be on the fetched branch) or the tip."""
    if revision is None:
        return tip
    full = gitrepo.find_commit(checkout, revision)
    if full is None:
        raise InputError(f"revision {revision} is not in the fetched history of {tracking}",
                         hint="push the deploy commit first; the VM only runs what is on the branch")
    if not gitrepo.is_ancestor(checkout, full, tip):
        raise InputError(f"revision {full[:12]} is not on {tracking}",
                         hint="the VM only moves along the branch; a rollback is a revert commit on it")
    return full


def move_to(checkout: Path, head: str, target: str, tip: str) -> bool:
    """Fast-forward the checkout from `head` to `target`; False when it is already there."""
    if head == target:
        return False
    tip_contains_head = gitrepo.is_ancestor(checkout, head, tip)
    # staged and unstaged edits of tracked files; untracked files survive a fast-forward
    # (git itself refuses if the new commit would overwrite one)
    changes = gitrepo.tracked_changes(checkout)
    if changes:
        raise UsageError(f"the checkout {checkout} has local changes; refusing to discard them: "
                         + ", ".join(changes[:10]),
                         hint="the VM follows git: commit the change to the repository instead, "
                              "or inspect it and `git restore` it on the VM")
    if gitrepo.is_ancestor(checkout, target, head) and tip_contains_head:
        raise Superseded(f"the checkout is already at {head[:12]}, a newer commit of the branch "
                         f"that contains {target[:12]}; nothing changed",
                         hint="a later deploy reached the VM first (the timer or another pipeline)",
                         details={"live": head, "requested": target})
    if not gitrepo.is_ancestor(checkout, head, target):
        raise UsageError(f"moving {checkout} from {head[:12]} to {target[:12]} is not a fast-forward",
                         hint="the checkout has commits the branch does not (or the revision is "
                              "older than what is live); sync never rewinds or discards history")
    gitrepo.fast_forward(checkout, target)
    return True


def inside(checkout: Path, relative: str, key: str) -> Path:
    """`relative` under the checkout; ConfigError naming the config key when it escapes."""
    path = (checkout / relative).resolve()
    if checkout.resolve() not in path.parents:
        raise ConfigError(f"{key}: {relative!r} points outside the checkout {checkout}")
    return path
