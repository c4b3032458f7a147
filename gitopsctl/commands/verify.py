"""gitopsctl verify."""

from __future__ import annotations

from gitopsctl.errors import NotImplementedYet


def verify(ctx, **options):
    raise NotImplementedYet("verify")
