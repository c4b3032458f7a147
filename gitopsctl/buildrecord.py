"""The build record: which images a source commit was built into, with their digests.

`gitopsctl build` writes <state_dir>/builds/<40-hex sha>.json once both images are
pushed and their digests read back from the registry; `bump` reads it. The state
dir is git-ignored: the deploy commits, not this file, are the record of what went
live. A record only ever lists images that were pushed completely.

    {
      "version": 1,
      "source": "<40 hex>",
      "created": "2026-11-26T14:00:00Z",
      "images": {
        "frontend": {"repository": "harbor.lan/homelab/frontend",
                     "tags": ["1a2b3c4", "main-1a2b3c4-1764160000"],
                     "digest": "sha256:...",
                     "reference": "harbor.lan/homelab/frontend:main-1a2b3c4-1764160000@sha256:..."}
      }
    }
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from gitopsctl.errors import InputError, Location
from gitopsctl.fsutil import write_atomic
from gitopsctl.imageref import parse_reference
from gitopsctl.repo import is_full_sha

RECORD_VERSION = 1
_PREFIX_RE = re.compile(r"^[0-9a-f]{4,40}$")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class BuiltImage:
    service: str
    repository: str          # registry-host/project/image
    tags: tuple[str, ...]    # sha7 first, then the sortable tag
    digest: str              # sha256:<64 hex>, as the registry reported it

    @property
    def tag(self) -> str:
        """The tag bump writes: the sortable one Flux's ImagePolicy would pick."""
        return self.tags[-1]

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}@{self.digest}"

    def to_dict(self) -> dict:
        return {"repository": self.repository, "tags": list(self.tags), "digest": self.digest,
                "reference": self.reference}


@dataclass(frozen=True)
class BuildRecord:
    source: str
    images: dict[str, BuiltImage]
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                time.gmtime()))

    def image(self, service: str) -> BuiltImage:
        try:
            return self.images[service]
        except KeyError:
            raise InputError(f"the build of {self.source[:7]} has no image for {service!r}",
                             hint=f"run `gitopsctl build --source {self.source} "
                                  f"--service {service}` first") from None

    def to_dict(self) -> dict:
        return {"version": RECORD_VERSION, "source": self.source, "created": self.created,
                "images": {name: img.to_dict() for name, img in sorted(self.images.items())}}


def builds_dir(config) -> Path:
    return config.resolve(config.state_dir) / "builds"


def record_path(config, sha: str) -> Path:
    if not is_full_sha(sha):
        raise InputError(f"not a full commit SHA: {sha!r}", hint="pass the 40-character SHA")
    return builds_dir(config) / f"{sha}.json"


def write_record(config, record: BuildRecord, *, merge: bool = True) -> Path:
    """Write atomically (temp file + rename). With merge, images already recorded for
    this source and not rebuilt now are kept (a `--service frontend` rebuild)."""
    path = record_path(config, record.source)
    images = dict(record.images)
    if merge and path.exists():
        try:
            previous = read_record(config, record.source)
        except InputError:
            previous = None  # a broken old record is replaced, not merged
        if previous is not None:
            images = {**previous.images, **images}
    doc = BuildRecord(source=record.source, images=images, created=record.created).to_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(doc, indent=2, sort_keys=False) + "\n")
    return path


def read_record(config, sha: str) -> BuildRecord:
    """The record for a source commit; a unique SHA prefix (4+ hex) is accepted."""
    path = _find(config, sha)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read build record {path}: {exc.strerror}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"build record is not valid JSON: {exc.msg}",
                         location=Location(str(path), exc.lineno, exc.colno),
                         hint=f"delete it and run `gitopsctl build --source {sha}` again") from None
    return _parse(doc, path)


def _find(config, sha: str) -> Path:
    sha = sha.lower()
    if not _PREFIX_RE.match(sha):
        raise InputError(f"{sha!r} is not a commit SHA", hint="pass 4 to 40 hex digits")
    directory = builds_dir(config)
    if len(sha) == 40:
        path = directory / f"{sha}.json"
        if path.exists():
            return path
        matches = []
    else:
        matches = sorted(directory.glob(f"{sha}*.json")) if directory.is_dir() else []
        if len(matches) == 1:
            return matches[0]
    if len(matches) > 1:
        raise InputError(f"SHA prefix {sha} matches {len(matches)} build records",
                         hint="pass more digits of the SHA")
    raise InputError(f"no build record for {sha[:12]} in {directory}",
                     hint=f"run `gitopsctl build --source {sha}` first (it writes the record "
                          "after both images are pushed)")


def _parse(doc: object, path: Path) -> BuildRecord:
    def bad(what: str) -> InputError:
        return InputError(f"build record {what}", location=Location(str(path)),
                          hint="delete it and run `gitopsctl build` again")

    if not isinstance(doc, dict) or doc.get("version") != RECORD_VERSION:
        raise bad(f"has an unknown format (expected version {RECORD_VERSION})")
    source = doc.get("source")
    if not is_full_sha(source):
        raise bad("has no valid `source` SHA")
    images_doc = doc.get("images")
    if not isinstance(images_doc, dict) or not images_doc:
        raise bad("lists no images")
    images = {}
    for name, entry in images_doc.items():
        if not isinstance(entry, dict):
            raise bad(f"entry {name!r} is not a mapping")
        repository, tags, digest = entry.get("repository"), entry.get("tags"), entry.get("digest")
        if not (isinstance(tags, list) and tags and all(isinstance(t, str) for t in tags)):
            raise bad(f"entry {name!r} has no tags")
        if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
            raise bad(f"entry {name!r} has no valid sha256 digest")
        if not isinstance(repository, str):
            raise bad(f"entry {name!r} has no repository")
        parse_reference(f"{repository}:{tags[-1]}@{digest}", location=Location(str(path)))
        images[name] = BuiltImage(service=name, repository=repository, tags=tuple(tags),
                                  digest=digest)
    created = doc.get("created") if isinstance(doc.get("created"), str) else ""
    return BuildRecord(source=source, images=images, created=created)
