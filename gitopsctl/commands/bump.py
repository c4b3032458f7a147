"""gitopsctl bump."""

from __future__ import annotations

from gitopsctl.errors import NotImplementedYet


def bump(ctx, **options):
    raise NotImplementedYet("bump")
