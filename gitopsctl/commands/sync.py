"""gitopsctl sync."""

from __future__ import annotations

from gitopsctl.errors import NotImplementedYet


def sync(ctx, **options):
    raise NotImplementedYet("sync")
