"""gitopsctl rollback."""

from __future__ import annotations

from gitopsctl.errors import NotImplementedYet


def rollback(ctx, **options):
    raise NotImplementedYet("rollback")
