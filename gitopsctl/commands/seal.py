"""gitopsctl seal."""

from __future__ import annotations

from gitopsctl.errors import NotImplementedYet


def seal(ctx, **options):
    raise NotImplementedYet("seal")
