"""The busybox base image: imported, deterministic, idempotent, has the applets examples use."""

from __future__ import annotations

import io
import tarfile

from gitopsctl.sandbox.lab.baseimage import APPLETS, BASE_IMAGE, ensure_base_image, rootfs_tar


def test_rootfs_is_deterministic_and_complete():
    first, second = rootfs_tar(), rootfs_tar()
    assert first == second
    names = tarfile.open(fileobj=io.BytesIO(first)).getnames()
    assert "bin/busybox" in names
    for applet in ("sh", "httpd", "wget", "sleep"):
        assert f"bin/{applet}" in names
    assert len(first) < 4 * 1024 * 1024


def test_import_is_idempotent(docker_client, base_image):
    assert base_image == BASE_IMAGE
    before = docker_client.images.get(BASE_IMAGE).id
    assert ensure_base_image(docker_client) == BASE_IMAGE
    assert docker_client.images.get(BASE_IMAGE).id == before


def test_applets_run_in_the_image(docker_client, base_image):
    out = docker_client.containers.run(
        base_image, ["sh", "-c", "echo hello; wget --help 2>&1 | head -1; ls /www /tmp && echo ok"],
        network_mode="host", remove=True)
    text = out.decode()
    assert text.startswith("hello")
    assert text.rstrip().endswith("ok")
    assert set(APPLETS) >= {"sh", "httpd", "wget"}
