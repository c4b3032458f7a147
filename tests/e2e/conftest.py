"""The whole homelab on this machine (gitopsctl.sandbox.lab.lab.Lab).

`shared_lab` is one homelab per module: each test leaves it live and healthy (a deploy
or a rollback, and a fix commit after a break), so tests run one after another on it.
"""

from __future__ import annotations

import os

import pytest

from gitopsctl.sandbox.lab.lab import Lab, LabSettings


@pytest.fixture(scope="module")
def shared_lab(tmp_path_factory, docker_engine):
    previous = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = docker_engine.docker_host
    try:
        with Lab(tmp_path_factory.mktemp("lab"), settings=LabSettings(failure_timeout=90)) as running:
            yield running
    finally:
        if previous is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = previous


@pytest.fixture(scope="module")
def shop_lab(tmp_path_factory, docker_engine):
    """A lab running another homelab than the sandbox's (tests/e2e/homelabs/shop): services
    web, api and worker on targets `cluster` and `box`. Left live and healthy by each test."""
    from tests.e2e.homelabs import shop

    previous = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = docker_engine.docker_host
    try:
        with Lab(tmp_path_factory.mktemp("shop"), settings=LabSettings(failure_timeout=90),
                 seed=shop()) as running:
            yield running
    finally:
        if previous is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = previous
