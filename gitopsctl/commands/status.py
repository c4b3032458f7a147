"""gitopsctl status."""

from __future__ import annotations

from gitopsctl.errors import NotImplementedYet


def status(ctx, **options):
    raise NotImplementedYet("status")
