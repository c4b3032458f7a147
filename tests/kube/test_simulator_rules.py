"""Small pure rules of the simulator: Go durations, memory quantities, image references."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gitopsctl.harness.kube.fluxsim import format_duration, go_duration
from gitopsctl.harness.kube.kubelet import memory_bytes, split_image


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
