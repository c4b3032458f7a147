"""The whole homelab on this machine (gitopsctl.harness.lab.Lab), one per test."""

from __future__ import annotations

import pytest

from gitopsctl.harness.lab import Lab, LabSettings


@pytest.fixture
def lab(tmp_path, docker_engine, monkeypatch):
    # The lab reuses the session's engine (connect_or_start finds it through DOCKER_HOST).
    monkeypatch.setenv("DOCKER_HOST", docker_engine.docker_host)
    with Lab(tmp_path / "lab", settings=LabSettings(failure_timeout=90)) as running:
        yield running
