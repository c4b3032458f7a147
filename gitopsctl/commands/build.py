"""gitopsctl build."""

from __future__ import annotations

from gitopsctl.errors import NotImplementedYet


def build(ctx, **options):
    raise NotImplementedYet("build")
