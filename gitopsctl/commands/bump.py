"""gitopsctl bump: set image references at Flux setter markers, commit, push.

The edit itself (explicit values or the pipeline's build record) is gitopsctl/bumping.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from gitopsctl.bumping import BumpResult
from gitopsctl.bumping import bump as _bump


def bump(ctx, *, paths: Sequence[Path] = (), policies: Sequence[str] = (), services: Sequence[str] = (),
         source: str | None = None, commit: bool = True, push: bool = True, dry_run: bool = False,
         allow_unbuilt: bool = False) -> BumpResult:
    return _bump(ctx, paths=paths, policies=policies, services=services, source=source, commit=commit,
                 push=push, dry_run=dry_run, allow_unbuilt=allow_unbuilt)
