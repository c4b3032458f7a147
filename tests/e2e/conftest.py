"""The whole homelab on this machine (gitopsctl.harness.lab.Lab).

`lab` is a fresh homelab per test; `shared_lab` is one per module, for tests that each
leave it live and healthy (a deploy or a rollback), so they can run one after another.
"""

from __future__ import annotations

import os

import pytest

from gitopsctl.harness.lab import Lab, LabSettings


@pytest.fixture
def lab(tmp_path, docker_engine, monkeypatch):
    # The lab reuses the session's engine (connect_or_start finds it through DOCKER_HOST).
    monkeypatch.setenv("DOCKER_HOST", docker_engine.docker_host)
    with Lab(tmp_path / "lab", settings=LabSettings(failure_timeout=90)) as running:
        yield running


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
