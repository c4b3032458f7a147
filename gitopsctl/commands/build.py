"""gitopsctl build: one source commit -> every selected service's image, pushed, digests known
(the work is gitopsctl.build)."""

from __future__ import annotations

from gitopsctl.build.results import BuildResult


def build(ctx, source: str | None = None, services: list[str] | tuple[str, ...] = ("all",),
          push: bool = True, no_cache: bool = False) -> BuildResult:
    from gitopsctl.build import run

    return run(ctx, source=source, services=services, push=push, no_cache=no_cache)
