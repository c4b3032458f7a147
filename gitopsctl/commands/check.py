"""gitopsctl check."""

from __future__ import annotations

from gitopsctl.errors import NotImplementedYet


def check(ctx, **options):
    raise NotImplementedYet("check")
