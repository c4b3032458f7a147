"""A real Kubernetes target (the API emulator, real client, real containers) gives up a wait
as soon as the engine asks: what lets a stage group fail fast when one service fails."""

from __future__ import annotations

import threading
import time

from gitopsctl.targets import stoppable

from tests.kube.conftest import cluster, frontend_build, frontend_image, kube  # noqa: F401 - fixtures


def test_a_rollout_that_never_gets_ready_stops_waiting_within_a_poll_of_the_request(cluster):  # noqa: F811
    target = cluster.target()
    sha = cluster.push(mode="unhealthy", message="never ready")
    deadline = time.monotonic() + 60
    target.apply(sha, deadline)
    stop = threading.Event()
    asked = {}

    def ask() -> None:
        asked["at"] = time.monotonic()
        stop.set()

    timer = threading.Timer(1.5, ask)
    timer.start()
    try:
        with stoppable(stop):
            report = target.wait_healthy(sha, deadline)
    finally:
        timer.cancel()

    assert "at" in asked, report.to_dict()  # it was still waiting when asked
    assert time.monotonic() - asked["at"] < 1.0
    assert not report.healthy and report.details.get("stopped") is True
    assert report.failed_check is None  # no evidence of its own: never blamed for the group


def test_without_a_request_the_same_wait_runs_to_its_verdict(cluster):  # noqa: F811
    target = cluster.target()
    sha = cluster.push(message="a good release")
    deadline = time.monotonic() + 60
    target.apply(sha, deadline)

    with stoppable(threading.Event()):
        report = target.wait_healthy(sha, deadline)

    assert report.healthy, report.to_dict()
    assert "stopped" not in report.details
