"""gitopsctl suspend / resume: pause deploys and image automation with one commit each.

One module for both (one feature): the CLI runs `resume` as this command with
resume=True, since commands are found as gitopsctl.commands.<name>.<name>.
"""

from __future__ import annotations

from gitopsctl.deploy.suspension import PauseResult


def suspend(ctx, *, reason: str | None = None, resume: bool = False) -> PauseResult:
    from gitopsctl.deploy import suspension

    if resume:
        return suspension.resume(ctx, reason=reason)
    return suspension.suspend(ctx, reason=reason or "")
