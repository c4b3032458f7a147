"""What a build produced: per-service images and the command's result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ServiceBuild:
    service: str
    repository: str
    tags: list[str]
    context: str
    image_id: str = ""
    digest: str = ""
    build_seconds: float = 0.0
    push_seconds: float = 0.0
    steps: int = 0
    cached_steps: int = 0

    @property
    def reference(self) -> str:
        """repo:sortable-tag@digest, what bump writes; without a digest when not pushed."""
        ref = f"{self.repository}:{self.tags[-1]}"
        return f"{ref}@{self.digest}" if self.digest else ref

    def to_dict(self) -> dict:
        return {"repository": self.repository, "tags": self.tags, "image_id": self.image_id,
                "digest": self.digest or None, "reference": self.reference,
                "context": self.context, "build_seconds": round(self.build_seconds, 3),
                "push_seconds": round(self.push_seconds, 3), "steps": self.steps,
                "cached_steps": self.cached_steps}


@dataclass
class BuildResult:
    source: str
    pushed: bool
    images: dict[str, ServiceBuild]
    record: str | None = None
    elapsed: float = 0.0
    exit_code: int = 0

    def to_dict(self) -> dict:
        return {"source": self.source, "pushed": self.pushed, "record": self.record,
                "elapsed_seconds": round(self.elapsed, 3),
                "images": {name: b.to_dict() for name, b in self.images.items()}}

    def render_text(self, console: Any) -> None:
        from rich.markup import escape

        verb = "built and pushed" if self.pushed else "built (not pushed)"
        console.print(f"{self.source[:7]}: {len(self.images)} image(s) {verb} "
                      f"in {self.elapsed:.1f}s")
        for name, b in self.images.items():
            cache = f", {b.cached_steps}/{b.steps} steps cached" if b.steps else ""
            console.print(f"  {escape(name)}: {escape(b.reference)}")
            console.print(f"    build {b.build_seconds:.1f}s{cache}"
                          + (f", push {b.push_seconds:.1f}s" if self.pushed else ""))
        if self.record:
            console.print(f"  record: {escape(self.record)}")


@dataclass(frozen=True)
class BuildPlan:
    service: str
    repository: str          # registry-host/project/image
    tags: tuple[str, ...]
    context: str             # repo-relative
    dockerfile: str          # relative to the context
    context_tar: bytes = field(repr=False)
