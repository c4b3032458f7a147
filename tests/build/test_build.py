"""gitopsctl build on the real harness: dockerd, docker-registry, git remote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gitopsctl.buildrecord import read_record
from gitopsctl.commands.build import build
from gitopsctl.errors import ConfigError, ExternalError, InputError
from gitopsctl.registry import Credentials, RegistryClient

from .conftest import make_homelab


def registry_client(reg) -> RegistryClient:
    return RegistryClient(reg.url, "http", Credentials(reg.username, reg.password))


def records(homelab) -> list[Path]:
    d = homelab.root / ".gitopsctl" / "builds"
    return sorted(d.iterdir()) if d.exists() else []


def test_build_pushes_both_images_and_records_digests(homelab, registry_env, docker_client):
    sha = homelab.remote.head()
    result = build(homelab.context())
    assert result.exit_code == 0 and result.pushed and result.source == sha
    assert set(result.images) == {"frontend", "backend"}
    client = registry_client(registry_env)
    record = read_record(homelab.context().config, sha)
    for name, img in result.images.items():
        repo = f"{homelab.project}/{name}"
        assert img.tags[0] == sha[:7]
        assert img.tags[1].startswith(f"main-{sha[:7]}-")
        assert sorted(client.tags(repo)) == sorted(img.tags)
        for tag in img.tags:  # both tags name the very image that was recorded
            assert client.manifest_digest(repo, tag) == img.digest
        assert record.image(name).reference == \
            f"{registry_env.url}/{repo}:{img.tags[1]}@{img.digest}"
        labels = docker_client.images.get(img.image_id).labels
        assert labels["org.opencontainers.image.revision"] == sha
        assert labels["org.opencontainers.image.source"] == str(homelab.remote.bare)
        assert labels["org.opencontainers.image.created"].endswith("Z")
    # the build arg reached the image: /version serves the source SHA
    out = docker_client.containers.run(result.images["backend"].image_id,
                                       ["cat", "/app/fail-mode"], remove=True, network_mode="host")
    assert out.decode().strip() == "none"
    env = docker_client.images.get(result.images["frontend"].image_id).attrs["Config"]["Env"]
    assert f"SOURCE_SHA={sha}" in env


def test_rebuild_with_nothing_changed_is_cached_and_fast(homelab):
    first = build(homelab.context())
    start = time.monotonic()
    second = build(homelab.context())
    elapsed = time.monotonic() - start
    assert elapsed < 3.0, f"warm rebuild of both images took {elapsed:.2f}s"
    for name in ("frontend", "backend"):
        assert second.images[name].image_id == first.images[name].image_id
        assert second.images[name].digest == first.images[name].digest
        assert second.images[name].cached_steps >= 8


def test_image_is_built_from_the_commit_not_the_dirty_tree(homelab, docker_client):
    sha = homelab.remote.head()
    (homelab.root / "examples/frontend/fail-mode").write_text("crash\n")  # uncommitted
    result = build(homelab.context(), services=["frontend"], push=False)
    out = docker_client.containers.run(result.images["frontend"].image_id,
                                       ["cat", "/app/fail-mode"], remove=True, network_mode="host")
    assert out.decode().strip() == "none"
    assert result.source == sha
    assert records(homelab) == []  # --no-push writes no record: there are no digests


def test_failing_build_step_shows_instruction_and_log_and_records_nothing(homelab):
    dockerfile = (homelab.root / "examples/backend/Dockerfile").read_text()
    homelab.commit({"examples/backend/Dockerfile": dockerfile.replace(
        "COPY www/ /www/", "COPY www/ /www/\nRUN echo preparing-assets && echo broken-step >&2 && exit 3")})
    with pytest.raises(ExternalError) as err:
        build(homelab.context())
    e = err.value
    assert e.exit_code == 1
    assert "backend" in e.message
    assert "RUN echo preparing-assets" in e.message
    assert "exited with code 3" in e.message
    assert "broken-step" in "\n".join(e.details["last_lines"])
    assert records(homelab) == []  # the frontend built fine, yet nothing is recorded


def test_invalid_dockerfile_points_at_the_line(homelab):
    homelab.commit({"examples/frontend/Dockerfile": "FROM gitopsctl.local/busybox:base\nFROBNICATE x\n"})
    with pytest.raises(InputError) as err:
        build(homelab.context(), push=False)
    assert str(err.value.location) == "examples/frontend/Dockerfile:2"
    assert err.value.exit_code == 2


def test_missing_dockerfile_and_context_are_input_errors(homelab):
    subprocess.run(["git", "rm", "-q", "examples/frontend/Dockerfile"], cwd=homelab.root, check=True)
    homelab.remote.commit_all("drop Dockerfile")
    with pytest.raises(InputError) as err:
        build(homelab.context())
    assert "examples/frontend/Dockerfile does not exist" in err.value.message
    assert err.value.exit_code == 2
    assert str(err.value.location).endswith("gitopsctl.yaml")

    config = (homelab.root / "gitopsctl.yaml").read_text()
    homelab.commit({"gitopsctl.yaml": config.replace("examples/backend", "examples/nope")})
    with pytest.raises(InputError) as err:
        build(homelab.context(), services=["backend"])
    assert "'examples/nope' is not a directory" in err.value.message


def test_unknown_source_sha(homelab):
    with pytest.raises(InputError):
        build(homelab.context(), source="deadbeef")
    with pytest.raises(InputError):
        build(homelab.context(), source="--upload-pack=x")


def test_registry_down_fails_fast_with_url_and_records_nothing(homelab, registry_env):
    registry_env.stop()
    start = time.monotonic()
    with pytest.raises(ExternalError) as err:
        build(homelab.context())
    assert time.monotonic() - start < 15
    assert f"http://{registry_env.url}/v2/" in err.value.message
    assert "attempts" in err.value.message
    assert records(homelab) == []


def test_wrong_credentials_are_refused_and_never_printed(homelab):
    with pytest.raises(ExternalError) as err:
        build(homelab.context(HARBOR_PASSWORD="not-the-secret-123"))
    text = str(err.value) + json.dumps(err.value.to_dict())
    assert "refused our credentials" in text
    assert "not-the-secret-123" not in text


def test_half_credentials_are_a_config_error(homelab):
    env = homelab.context()
    env.environ.pop("HARBOR_PASSWORD")
    with pytest.raises(ConfigError):
        build(env)


def test_push_through_harbor_token_flow(make_git_remote, harbor, base_image, monkeypatch):
    for key, value in harbor.env().items():
        monkeypatch.setenv(key, value)
    lab = make_homelab(make_git_remote, harbor.url)
    issued = harbor.token.issued
    result = build(lab.context())
    assert harbor.token.issued > issued
    client = RegistryClient(harbor.url, "http", Credentials(harbor.username, harbor.password))
    for name, img in result.images.items():
        assert client.manifest_digest(f"{lab.project}/{name}", img.tags[1]) == img.digest


def test_cli_json_output_and_no_secret_anywhere(homelab, registry_env):
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.run([sys.executable, "-m", "gitopsctl", "--repo", str(homelab.root),
                           "-v", "-o", "json", "build"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] is True and doc["pushed"] is True
    assert set(doc["images"]) == {"frontend", "backend"}
    for img in doc["images"].values():
        assert img["reference"].endswith(img["digest"])
    assert Path(doc["record"]).exists()
    assert registry_env.password not in proc.stdout + proc.stderr

    env["HARBOR_PASSWORD"] = "wrong-secret-value"
    proc = subprocess.run([sys.executable, "-m", "gitopsctl", "--repo", str(homelab.root),
                           "-o", "json", "build", "--service", "frontend"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["error"]["kind"] == "external"
    assert "wrong-secret-value" not in proc.stdout + proc.stderr
