"""Failures a user meets outside their own code: no disk, no engine, no base image."""

from __future__ import annotations

import os
import subprocess

import pytest

from gitopsctl.commands.build import build
from gitopsctl.errors import ExternalError
from gitopsctl.sandbox.lab.baseimage import ensure_base_image
from gitopsctl.sandbox.lab.dockerd import DockerEngine
from gitopsctl.sandbox.lab.ports import free_port


@pytest.fixture(scope="module")
def small_engine(tmp_path_factory):
    """A second real dockerd whose data root is a 10 MB tmpfs: room for the base image only."""
    mount = tmp_path_factory.mktemp("small-disk")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=10m,mode=0700", "tmpfs", str(mount)],
                   check=True)
    engine = None
    try:
        engine = DockerEngine.start(mount / "engine")
        ensure_base_image(engine.client())
        yield engine
    finally:
        if engine is not None:
            engine.stop()
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_out_of_disk_while_building(homelab, small_engine):
    homelab.commit({"examples/frontend/www/big.bin": os.urandom(12 * 1024 * 1024).hex()[:12 * 1024 * 1024]})
    with pytest.raises(ExternalError) as err:
        build(homelab.context(**small_engine.env()), services=["frontend"], push=False)
    assert "out of disk space" in err.value.message
    assert "prune" in err.value.hint


def test_unreachable_engine_names_the_docker_host(homelab, tmp_path):
    host = f"unix://{tmp_path}/no-such.sock"
    with pytest.raises(ExternalError) as err:
        build(homelab.context(DOCKER_HOST=host), push=False)
    assert host in err.value.message
    assert "DOCKER_HOST" in err.value.hint


def test_missing_base_image_names_the_from_instruction(homelab):
    # a registry host on a closed loopback port: the engine's pull attempt stays on 127.0.0.1
    missing = f"127.0.0.1:{free_port()}/homelab/missing:base"
    path = homelab.root / "examples/backend/Dockerfile"
    homelab.commit({"examples/backend/Dockerfile": path.read_text().replace(
        "ARG BASE_IMAGE=gitopsctl.local/busybox:base", f"ARG BASE_IMAGE={missing}")})
    with pytest.raises(ExternalError) as err:
        build(homelab.context(), services=["backend"], push=False)
    assert "FROM ${BASE_IMAGE}" in err.value.message
    assert "base image" in err.value.hint
