"""A service's build context, read from the commit (never the working tree)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from gitopsctl.errors import InputError, Location


def context_tar(repo_root: Path, config, sha: str, name: str, svc) -> bytes:
    """The service's build context as a tar, exactly as committed in `sha`."""
    from gitopsctl import repo as gitrepo

    context = svc.context.strip("/") or "."
    where = Location(str(config.path)) if config.path else None
    tree = f"{sha}:{context}" if context != "." else f"{sha}^{{tree}}"
    if gitrepo.object_type(repo_root, tree) != "tree":
        on_disk = (repo_root / context).is_dir()
        raise InputError(
            f"services.{name}.context: {context!r} is not a directory in commit {sha[:7]}",
            location=where,
            hint=("it exists in the working tree but is not committed: commit it first"
                  if on_disk else "fix services." + name + ".context in the config"))
    dockerfile = f"{context}/{svc.dockerfile}" if context != "." else svc.dockerfile
    if not gitrepo.has_path(repo_root, sha, dockerfile):
        raise InputError(
            f"services.{name}.dockerfile: {dockerfile} does not exist in commit {sha[:7]}",
            location=where,
            hint=f"add {svc.dockerfile} to {context}/, or set services.{name}.dockerfile")
    # the commit itself for the top: git then stamps the files with the commit's time
    treeish = f"{sha}:{context}" if context != "." else sha
    return apply_dockerignore(gitrepo.archive(repo_root, treeish), svc.dockerfile)


def apply_dockerignore(tar_bytes: bytes, dockerfile: str) -> bytes:
    """Drop what .dockerignore excludes, as the docker CLI does before sending a context."""
    from docker.utils.build import PatternMatcher

    src = tarfile.open(fileobj=io.BytesIO(tar_bytes))
    try:
        member = src.getmember(".dockerignore")
    except KeyError:
        return tar_bytes
    text = src.extractfile(member).read().decode(errors="replace")
    patterns = [line.strip() for line in text.splitlines()
                if line.strip() and not line.strip().startswith("#")]
    matcher = PatternMatcher(patterns)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as dst:
        for info in src.getmembers():
            name = info.name.rstrip("/")
            # the Dockerfile and .dockerignore always reach the daemon (docker CLI rule)
            if name not in (dockerfile, ".dockerignore") and matcher.matches(name):
                continue
            dst.addfile(info, src.extractfile(info) if info.isfile() else None)
    return out.getvalue()
