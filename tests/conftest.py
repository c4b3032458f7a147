"""Session-scoped real services every test area shares.

Started lazily (only when a test asks for them), on loopback only, owned by this
test session and removed after it. A service that cannot start makes the tests
that need it fail with the reason: nothing is skipped.

    docker_engine   a private dockerd; DOCKER_HOST points at it for the session
    docker_client   docker.DockerClient on that engine
    base_image      "gitopsctl.local/busybox:base", imported from busybox-static
    registry        docker-registry with htpasswd auth for robot$homelab+ci
    registry_env    function-scoped: HARBOR_USERNAME / HARBOR_PASSWORD set for one test
    harbor          a registry behind a Harbor-style Bearer token service
    git_remote      function-scoped: a bare remote plus a seeded working clone
    make_git_remote function-scoped factory for remotes with custom seeds
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gitopsctl.sandbox.lab.gitremote import GitRemote, make_git_remote as _make_git_remote

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _isolated_docker_config(tmp_path_factory):
    """Tests never read or write the user's ~/.docker (credentials, contexts)."""
    config_dir = tmp_path_factory.mktemp("docker-config")
    saved = {k: os.environ.get(k) for k in ("DOCKER_CONFIG", "HARBOR_USERNAME", "HARBOR_PASSWORD")}
    os.environ["DOCKER_CONFIG"] = str(config_dir)
    # credentials are only present inside tests that ask for them (registry_env)
    os.environ.pop("HARBOR_USERNAME", None)
    os.environ.pop("HARBOR_PASSWORD", None)
    yield config_dir
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory):
    from gitopsctl.sandbox.lab.dockerd import DockerEngine

    engine = DockerEngine.start(tmp_path_factory.mktemp("dockerd"))
    saved = os.environ.get("DOCKER_HOST")
    os.environ.update(engine.env())  # docker.from_env() and docker-compose find it
    try:
        yield engine
    finally:
        if saved is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = saved
        engine.stop()


@pytest.fixture(scope="session")
def docker_client(docker_engine):
    return docker_engine.client()


@pytest.fixture(scope="session")
def base_image(docker_client) -> str:
    from gitopsctl.sandbox.lab.baseimage import ensure_base_image

    return ensure_base_image(docker_client)


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    from gitopsctl.sandbox.lab.registry import Registry

    reg = Registry(tmp_path_factory.mktemp("registry")).start()
    try:
        yield reg
    finally:
        reg.close()


@pytest.fixture
def registry_env(registry, monkeypatch):
    """The registry with its robot credentials in the environment for this test only.

    A test that stops the registry must not leave it down for the next one.
    """
    for key, value in registry.env().items():
        monkeypatch.setenv(key, value)
    yield registry
    if not registry.running:
        registry.start()


@pytest.fixture(scope="session")
def harbor(tmp_path_factory):
    from gitopsctl.sandbox.lab.registry import start_harbor_like

    reg = start_harbor_like(tmp_path_factory.mktemp("harbor"))
    try:
        yield reg
    finally:
        reg.close()


@pytest.fixture
def make_git_remote(tmp_path):
    """make_git_remote(seed=..., files=...) -> GitRemote under this test's tmp_path."""
    counter = iter(range(1000))

    def make(seed=None, *, files=None, branch: str = "main",
             message: str = "initial commit") -> GitRemote:
        return _make_git_remote(tmp_path / f"git-{next(counter)}", seed, files=files,
                                branch=branch, message=message)

    return make


@pytest.fixture
def git_remote(make_git_remote) -> GitRemote:
    return make_git_remote(files={"README.md": "homelab\n"})
