"""The tags every build gets, from config.registry.tag_template.

Each image is tagged twice: `<sha7>`, which people can read, and a sortable tag
(default `main-<sha7>-<unix seconds>`) that a Flux ImagePolicy orders numerically:

    filterTags:
      pattern: '^main-[a-f0-9]+-(?P<ts>[0-9]+)'
      extract: '$ts'
    policy:
      numerical:
        order: asc

`{timestamp}` is the source commit's committer time, not the wall clock, so
building the same commit twice gives the same tags, and the image Flux picks
follows the order of the commits rather than the order the builds ran in.
"""

from __future__ import annotations

import re
import string

from gitopsctl.errors import ConfigError, InputError
from gitopsctl.imageref import ImageReference, parse_reference
from gitopsctl.repo import is_full_sha

PLACEHOLDERS = ("sha7", "sha", "timestamp", "branch")
FLUX_FILTER_PATTERN = r"^main-[a-f0-9]+-(?P<ts>[0-9]+)"
FLUX_EXTRACT = "$ts"
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$", re.ASCII)


def template_fields(template: str) -> list[str]:
    """The placeholders a template uses; ConfigError for unknown ones or bad braces."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"registry.tag_template {template!r}: {exc}",
                          hint="placeholders look like {sha7}; write literal text around them") from None
    fields = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in PLACEHOLDERS or spec or conversion:
            raise ConfigError(f"registry.tag_template {template!r}: unknown placeholder "
                              f"{{{name}{'!' + conversion if conversion else ''}"
                              f"{':' + spec if spec else ''}}}",
                              hint="use " + ", ".join("{" + p + "}" for p in PLACEHOLDERS))
        fields.append(name)
    return fields


def render_tag(template: str, sha: str, timestamp: int, branch: str = "main") -> str:
    """Fill in the template for a full 40-hex commit SHA and a unix timestamp."""
    if not is_full_sha(sha):
        raise InputError(f"not a full commit SHA: {sha!r}",
                         hint="pass the 40-character hex SHA (git rev-parse)")
    if timestamp < 0:
        raise InputError(f"negative timestamp {timestamp}")
    template_fields(template)
    # Tags allow [A-Za-z0-9_.-]; branch names may hold '/', which a tag cannot.
    safe_branch = re.sub(r"[^A-Za-z0-9_.-]+", "-", branch).strip("-.") or "branch"
    tag = template.format(sha7=sha[:7], sha=sha, timestamp=int(timestamp), branch=safe_branch)
    if not _TAG_RE.match(tag):
        raise ConfigError(f"registry.tag_template {template!r} renders to {tag!r}, "
                          "which is not a valid image tag",
                          hint="a tag is at most 128 characters of letters, digits, _ . and -, "
                               "not starting with . or -")
    return tag


def image_tags(config, service: str, sha: str, timestamp: int) -> list[ImageReference]:
    """The references one build of `service` is pushed as: `:<sha7>` first, then the sortable tag."""
    repository = config.image_repository(service)
    tags = [sha[:7], render_tag(config.registry.tag_template, sha, timestamp, config.git.branch)]
    refs = []
    for tag in dict.fromkeys(tags):  # a template of just {sha7} must not push twice
        refs.append(parse_reference(f"{repository}:{tag}"))
    return refs


def flux_tag_order(tag: str, pattern: str = FLUX_FILTER_PATTERN) -> int | None:
    """What Flux's numerical policy would order a tag by: the `ts` group, or None if filtered out.

    Flux's filterTags pattern is a Go regexp; `(?P<ts>...)` is the same in Python.
    """
    match = re.match(pattern, tag)
    return int(match.group("ts")) if match else None
