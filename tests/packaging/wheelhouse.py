"""A local wheelhouse of gitopsctl's dependencies, made from what the test venv already has.

The tests install gitopsctl the way a user does (pip resolves its requirements and extras,
pipx makes its own venv), but no index is reachable. Every distribution pip installed into
this venv is still there file by file, listed in its RECORD: packed back into a wheel with
its own dist-info, it is the same code the index served. `pip install --no-index
--find-links HOUSE` then resolves for real, and a requirement the house lacks fails as it
would against an index.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# Besides gitopsctl's requirements: what an isolated build of gitopsctl and pipx's own
# shared venv ask for.
BUILD_TOOLS = ("setuptools", "pip")
# pip writes these at install time; a wheel does not carry them.
INSTALL_ONLY = {"INSTALLER", "RECORD", "REQUESTED", "direct_url.json"}


def requirements_of(metadata_text: str, extras: set[str]) -> list[Requirement]:
    reqs = [Requirement(line.split(":", 1)[1].strip()) for line in metadata_text.splitlines()
            if line.startswith("Requires-Dist:")]
    return [r for r in reqs if r.marker is None
            or any(r.marker.evaluate({**default_environment(), "extra": e}) for e in extras | {""})]


def closure(roots: list[Requirement]) -> list[metadata.Distribution]:
    """The installed distributions `roots` need, transitively (extras followed)."""
    found: dict[str, metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        dist = metadata.distribution(req.name)  # PackageNotFoundError: the venv lacks it
        assert dist.version in req.specifier or not req.specifier, f"{req} but {dist.version}"
        key = f"{name}[{','.join(sorted(req.extras))}]"
        if key in found:
            continue
        found[key] = dist
        todo += requirements_of(dist.read_text("METADATA") or "", set(req.extras))
    unique = {canonicalize_name(d.metadata["Name"]): d for d in found.values()}
    return sorted(unique.values(), key=lambda d: canonicalize_name(d.metadata["Name"]))


def repack(dist: metadata.Distribution, house: Path) -> Path:
    """`dist` as a wheel in `house`, from its installed files."""
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    info_dir = f"{name}-{dist.version}.dist-info"
    wheel_meta = dist.read_text("WHEEL") or "Tag: py3-none-any\n"
    tags = [line.split(":", 1)[1].strip().split("-") for line in wheel_meta.splitlines()
            if line.startswith("Tag:")]
    # the compressed tag set of the filename (py2.py3-none-any), each part in first-seen order
    tag = "-".join(".".join(dict.fromkeys(t[i] for t in tags)) for i in range(3))
    scripts = {ep.name for ep in dist.entry_points if ep.group in ("console_scripts", "gui_scripts")}
    target = house / f"{name}-{dist.version}-{tag}.whl"
    record = []
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as whl:
        for packaged in dist.files or []:
            parts = packaged.parts
            if "__pycache__" in parts or packaged.suffix == ".pyc":
                continue
            if parts[0].endswith(".dist-info"):
                if parts[-1] in INSTALL_ONLY:
                    continue
                arcname = "/".join((info_dir, *parts[1:]))
            elif parts[0] == "..":
                if parts[-1] in scripts:
                    continue  # pip writes entry points' scripts for the venv it installs into
                arcname = f"{name}-{dist.version}.data/scripts/{parts[-1]}"
            else:
                arcname = "/".join(parts)
            source = Path(dist.locate_file(packaged))
            if not source.is_file():
                continue
            data = source.read_bytes()
            entry = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
            entry.external_attr = (source.stat().st_mode & 0o777 | 0o100000) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            whl.writestr(entry, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{arcname},sha256={digest},{len(data)}")
        record.append(f"{info_dir}/RECORD,,")
        whl.writestr(f"{info_dir}/RECORD", "\n".join(record) + "\n")
    return target


def build_house(gitopsctl_metadata: str, extras: set[str], house: Path) -> list[Path]:
    house.mkdir(parents=True, exist_ok=True)
    roots = requirements_of(gitopsctl_metadata, extras) + [Requirement(t) for t in BUILD_TOOLS]
    return [repack(dist, house) for dist in closure(roots)]
