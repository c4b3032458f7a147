"""gitopsctl unseal."""

from __future__ import annotations

from gitopsctl.errors import NotImplementedYet


def unseal(ctx, **options):
    raise NotImplementedYet("unseal")
