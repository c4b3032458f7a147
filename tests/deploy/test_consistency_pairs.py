"""Consistency pairs in the engine: stage, rollback, verify and status ask a real HTTP server.

The services are in-memory targets; the URL a pair asks is a real server on 127.0.0.1 whose
answers the test scripts, so what the engine reads is what a frontend's /api/version says.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitopsctl.deploy.consistency import names, version_in
from gitopsctl.deploy.stage import stage
from gitopsctl.deploy.status import status
from gitopsctl.deploy.verify import verify
from gitopsctl.errors import EXIT_FINDINGS, EXIT_HUMAN_NEEDED, EXIT_OK, EXIT_ROLLED_BACK
from gitopsctl.sandbox.lab.gitremote import git

from .conftest import FakeTargets

WEB_AND_API = ({"web": "cluster", "api": "box"}, {"cluster": "kubernetes", "box": "vm"})


class Answers:
    """What the asked service answers, request by request; the last answer repeats."""

    def __init__(self) -> None:
        self.script: list[tuple[int, str]] = [(200, "unset")]
        self.asked = 0

    def next(self) -> tuple[int, str]:
        self.asked += 1
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]


@pytest.fixture
def frontend():
    answers = Answers()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            code, body = answers.next()
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    answers.url = f"http://127.0.0.1:{server.server_address[1]}/api/version"
    yield answers
    server.shutdown()
    server.server_close()


def homelab(lab_factory, frontend, timeout: str = "3s"):
    return lab_factory(*WEB_AND_API, [["web"], ["api"]],
                       consistency=[{"from": "web", "to": "api", "url": frontend.url, "timeout": timeout}])


def staged(lab_factory, frontend, answers, timeout: str = "3s"):
    """(homelab, source, stage result) of one stage whose frontend answers `answers`, in
    order; a callable gets the source and returns them."""
    lab = homelab(lab_factory, frontend, timeout)
    source = lab.app_commit("v2")
    frontend.script = answers(source) if callable(answers) else answers
    return lab, source, stage(lab.context(), FakeTargets(lab), source=source, delay=0, allow_unbuilt=True)


def test_a_stage_whose_frontend_reaches_the_new_backend_is_deployed(lab_factory, frontend):
    lab, source, result = staged(lab_factory, frontend, lambda source: [(200, f"{source}\n")])

    assert (result.exit_code, result.outcome) == (EXIT_OK, "deployed"), result.to_dict()
    step = next(s for s in result.steps if s.name == "consistency web→api")
    assert step.status == "ok" and step.data["seen"] == source and step.data["expected"] == source
    assert step.data["ok"] and "web reaches api" in step.detail
    # asked after the last group, before image automation is handed back
    names_ = [s.name for s in result.steps]
    assert names_.index("api healthy") < names_.index("consistency web→api") < \
        names_.index("resume image automation")


def test_a_short_sha_names_the_version_too(lab_factory, frontend):
    lab = homelab(lab_factory, frontend)
    source = lab.app_commit("v2")
    frontend.script = [(200, f"{source[:7]} built 2026-12-01")]
    assert stage(lab.context(), FakeTargets(lab), source=source, delay=0,
                 allow_unbuilt=True).exit_code == EXIT_OK


def test_a_backend_version_that_arrives_late_within_the_timeout_passes(lab_factory, frontend):
    lab, source, result = staged(
        lab_factory, frontend, lambda source: [(502, "backend restarting"), (200, "0ld0ld0ld"), (200, source)],
        timeout="5s")

    assert result.exit_code == EXIT_OK, result.to_dict()
    step = next(s for s in result.steps if s.name == "consistency web→api")
    assert step.data["attempts"] == 3 and step.elapsed >= 2.0


def test_a_frontend_that_sees_another_backend_version_rolls_back_both(lab_factory, frontend):
    lab, source, result = staged(lab_factory, frontend, [(200, "1234567deadbeef\n")], timeout="2s")

    assert (result.exit_code, result.outcome) == (EXIT_ROLLED_BACK, "rolled-back"), result.to_dict()
    written = lab.written(source)
    assert [c["subject"].split(":")[0] for c in written] == ["deploy(web)", "deploy(api)", "rollback"]
    revert = written[-1]
    deploys = {c["sha"] for c in written[:2]}
    assert set(next(t for t in revert["trailers"] if t.startswith("Reverts: "))[9:].split(", ")) == deploys
    message = git(lab.remote.bare, "log", "-1", "--format=%B", revert["sha"])
    assert "web→api" in revert["subject"] and "1234567deadbeef" in revert["subject"]
    assert f"not {source[:7]} that git says is live" in message
    assert "Gitopsctl-Failed-Check: consistency web→api" in message
    assert f"{frontend.url}: HTTP 200 1234567deadbeef" in message  # the answers as evidence
    # after the revert no deploy of api is live: any version the route names passes
    assert result.rollback.consistency and result.rollback.consistency[0].ok
    assert result.rollback.consistency[0].expected is None


def test_a_route_that_fails_even_after_the_rollback_needs_a_human(lab_factory, frontend):
    lab, source, result = staged(lab_factory, frontend, [(502, "frontend: backend answered 404 for /version")],
                                 timeout="1s")

    assert (result.exit_code, result.outcome) == (EXIT_HUMAN_NEEDED, "rollback-failed"), result.to_dict()
    revert = lab.written(source)[-1]
    assert revert["subject"].startswith("rollback: ")
    assert "HTTP 502" in revert["subject"]
    assert result.rollback.verified is False
    assert any("the cause is not in the reverted deploy commits" in n for n in result.rollback.notes)


def test_verify_and_status_show_the_pair_against_what_git_says_is_live(lab_factory, frontend):
    lab = homelab(lab_factory, frontend, timeout="1s")
    source = lab.app_commit("v2")
    frontend.script = [(200, source)]
    assert stage(lab.context(), FakeTargets(lab), source=source, delay=0,
                 allow_unbuilt=True).exit_code == EXIT_OK

    checked = verify(lab.context(), FakeTargets(lab))
    assert checked.exit_code == EXIT_OK
    doc = checked.to_dict()
    assert doc["consistent"] is True and doc["consistency"][0]["expected"] == source

    shown = status(lab.context(), FakeTargets(lab)).to_dict()
    assert shown["consistent"] is True and shown["consistency"][0]["seen"] == source

    frontend.script = [(200, "0000000000")]
    asked = frontend.asked
    checked = verify(lab.context(), FakeTargets(lab))
    assert checked.exit_code == EXIT_FINDINGS
    assert checked.to_dict()["consistent"] is False
    assert frontend.asked - asked >= 2  # verify waits out the pair's timeout before judging
    shown = status(lab.context(), FakeTargets(lab))
    assert shown.exit_code == EXIT_FINDINGS and shown.to_dict()["inconsistent"] == ["web→api"]


def test_status_without_health_asks_nothing(lab_factory, frontend):
    lab = homelab(lab_factory, frontend)
    before = frontend.asked
    shown = status(lab.context(), FakeTargets(lab), health=False).to_dict()
    assert frontend.asked == before and shown["consistency"] == [] and shown["consistent"] is None


def test_a_deadline_is_kept_when_the_url_never_answers(lab_factory):
    lab = lab_factory(*WEB_AND_API, [["web"], ["api"]],
                      consistency=[{"from": "web", "to": "api", "timeout": "2s",
                                    "url": "http://127.0.0.1:9/api/version"}])
    source = lab.app_commit("v2")
    started = time.monotonic()
    result = stage(lab.context(), FakeTargets(lab), source=source, delay=0, allow_unbuilt=True)
    step = next(s for s in result.steps if s.name == "consistency web→api")
    assert step.status == "failed" and "does not answer" in step.detail
    assert step.elapsed < 4 and time.monotonic() - started < 30


@given(st.text(alphabet="0123456789abcdef", min_size=40, max_size=40),
       st.integers(min_value=0, max_value=40))
def test_a_prefix_names_the_commit_only_from_seven_characters(sha, length):
    assert names(sha[:length], sha) == (length >= 7)
    assert names(sha[:length].upper(), sha) == (length >= 7)


@given(st.text(alphabet="0123456789abcdef", min_size=7, max_size=40),
       st.text(alphabet=st.characters(whitelist_categories=("L", "N")), max_size=20))
def test_the_first_word_or_the_json_field_is_the_version(version, rest):
    assert version_in(f"  {version} {rest}\n", None) == version
    assert version_in(f'{{"backend": {{"version": "{version}"}}}}', "backend.version") == version
    assert version_in(f'{{"backend": "{version}"}}', "backend.version") is None
    assert version_in("not json", "version") is None
