"""gitopsctl stage."""

from __future__ import annotations

from gitopsctl.errors import NotImplementedYet


def stage(ctx, **options):
    raise NotImplementedYet("stage")
