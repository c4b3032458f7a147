"""Small pure rules of the simulator: Go durations, memory quantities, image references."""

from __future__ import annotations

import io
import subprocess
import tarfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitopsctl.sandbox.lab.kube.fluxsim import _extract
from gitopsctl.sandbox.lab.kube.fluxstatus import format_duration, go_duration
from gitopsctl.sandbox.lab.kube.kubelet import memory_bytes, split_image


@given(st.integers(0, 100), st.integers(0, 59), st.integers(0, 59))
def test_go_durations(hours, minutes, seconds):
    text = f"{hours}h{minutes}m{seconds}s"
    assert go_duration(text, -1) == hours * 3600 + minutes * 60 + seconds


def test_go_duration_edge_cases():
    assert go_duration("500ms", -1) == 0.5
    assert go_duration("1m30s", -1) == 90
    for bad in ("", "5", "5x", "1m junk", None, 3):
        assert go_duration(bad, -1) == -1
    assert format_duration(30) == "30s" and format_duration(300) == "5m0s"


def test_memory_quantities():
    assert memory_bytes("64Mi") == 64 * 1024**2
    assert memory_bytes("1G") == 10**9
    assert memory_bytes("512") == 512
    assert memory_bytes(None) is None and memory_bytes("lots") is None


def test_image_references_split_like_docker():
    assert split_image("127.0.0.1:5000/homelab/frontend:v1") == ("127.0.0.1:5000/homelab/frontend", "v1", None)
    assert split_image("127.0.0.1:5000/homelab/frontend") == ("127.0.0.1:5000/homelab/frontend", None, None)
    digest = "sha256:" + "a" * 64
    assert split_image(f"harbor.lan/x/y:t@{digest}") == ("harbor.lan/x/y", "t", digest)


def _tar(*members: tuple[str, bytes, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            if link:
                info.type, info.linkname = tarfile.SYMTYPE, link
            else:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_a_git_archive_unpacks(tmp_path):
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "apps").mkdir()
    (repo / "apps" / "kustomization.yaml").write_text("resources: []\n")
    (repo / "apps" / "alias.yaml").symlink_to("kustomization.yaml")
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                    "commit", "-qm", "seed"], check=True)
    archive = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", "HEAD"],
                             check=True, capture_output=True).stdout
    _extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "apps" / "alias.yaml").read_text() == "resources: []\n"


@pytest.mark.parametrize("member", [("../escape.yaml", b"x", ""), ("link", b"", "/etc/passwd"),
                                    ("link", b"", "../../up")])
def test_an_archive_member_outside_the_directory_is_refused(tmp_path, member):
    refused = (RuntimeError, getattr(tarfile, "FilterError", RuntimeError))
    (tmp_path / "out").mkdir()
    with pytest.raises(refused):
        _extract(_tar(member), tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    assert not (tmp_path / "escape.yaml").exists()


def test_an_absolute_member_never_lands_outside_the_directory(tmp_path):
    # tarfile's data filter makes the name relative; the 3.11.2 fallback refuses it.
    outside = tmp_path / "abs.yaml"
    (tmp_path / "out").mkdir()
    try:
        _extract(_tar((str(outside), b"x", "")), tmp_path / "out")
    except RuntimeError:
        pass
    assert not outside.exists()
