"""A tiny base image made from Debian's busybox-static with `docker import`.

Nothing can be pulled from Docker Hub here, so every example image is built FROM
this one. The rootfs is built in memory with fixed timestamps, so the same busybox
binary always yields the same layer and a rebuild reuses the cache.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from gitopsctl.errors import ExternalError

BASE_IMAGE = "gitopsctl.local/busybox:base"
BUSYBOX = Path("/bin/busybox")

# Applets the examples and tests use; busybox picks the applet from argv[0].
APPLETS = ("sh", "ash", "httpd", "wget", "sleep", "cat", "echo", "env", "ls", "mkdir", "rm",
           "printf", "test", "[", "true", "false", "kill", "ps", "grep", "sed", "date", "id",
           "hostname", "nc", "touch", "tail", "head", "wc", "sort", "tr", "cp", "mv", "ln",
           "chmod", "find", "xargs", "expr", "seq", "uname", "whoami", "timeout", "nslookup",
           "printenv", "pwd", "basename", "dirname", "stat", "du", "df", "netstat")

_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"
_MTIME = 1_700_000_000  # fixed, so the layer digest depends only on busybox itself


def rootfs_tar(busybox: Path = BUSYBOX) -> bytes:
    """An uncompressed tar of a minimal root filesystem around a static busybox."""
    try:
        binary = busybox.read_bytes()
    except OSError as exc:
        raise ExternalError(f"cannot read {busybox}: {exc.strerror}",
                            hint="apt-get install busybox-static (scripts/setup in the gitopsctl "
                                 "repository does this)") from None
    if binary[:4] != b"\x7fELF":
        raise ExternalError(f"{busybox} is not an ELF binary")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, mode in (("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("www", 0o755),
                           ("root", 0o700), ("var", 0o755), ("var/run", 0o755),
                           ("proc", 0o555), ("sys", 0o555), ("dev", 0o755)):
            _add(tar, name, tarfile.DIRTYPE, mode)
        _add(tar, "bin/busybox", tarfile.REGTYPE, 0o755, binary)
        for applet in APPLETS:
            _add(tar, f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox")
        _add(tar, "etc/passwd", tarfile.REGTYPE, 0o644, _PASSWD.encode())
        _add(tar, "etc/group", tarfile.REGTYPE, 0o644, _GROUP.encode())
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, kind: bytes, mode: int, data: bytes = b"",
         link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = _MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def ensure_base_image(client, reference: str = BASE_IMAGE) -> str:
    """Import the busybox base image into the engine unless it is already there.

    `client` is a docker.DockerClient. Returns the reference to use in FROM lines.
    """
    import docker.errors

    try:
        client.images.get(reference)
        return reference
    except docker.errors.ImageNotFound:
        pass
    repository, _, tag = reference.rpartition(":")
    try:
        client.api.import_image_from_data(
            rootfs_tar(), repository=repository, tag=tag,
            changes=['ENV PATH=/bin', 'CMD ["/bin/sh"]'])
        client.images.get(reference)
    except docker.errors.APIError as exc:
        raise ExternalError(f"docker import of {reference} failed: {exc.explanation or exc}") from None
    return reference
