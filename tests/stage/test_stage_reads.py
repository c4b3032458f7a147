"""Stage reads the deploy state once and follows it as its own pushes move the tip.

Every git process goes through a `git` on PATH that logs its arguments, so the test
sees the `git log` calls themselves (see test_state_reads.py).
"""

from __future__ import annotations

from gitopsctl import repo as gitrepo
from gitopsctl.deploy.stage import stage
from gitopsctl.errors import EXIT_OK, EXIT_ROLLED_BACK

from tests.deploy.conftest import FakeTargets, make_homelab
from tests.stage.test_state_reads import bounded, log_calls, logging_git

SERVICES = ({"web": "cluster", "api": "box"}, {"cluster": "kubernetes", "box": "vm"})


def test_stage_reads_the_log_once_and_records_the_pause_state(tmp_path, monkeypatch):
    lab = make_homelab(tmp_path / "lab", *SERVICES, [["web"], ["api"]])
    source = lab.app_commit("v2")
    env, calls = logging_git(tmp_path)
    monkeypatch.setenv("PATH", env["PATH"])

    result = stage(lab.context(), FakeTargets(lab), source=source, delay=0, allow_unbuilt=True)

    assert (result.exit_code, result.outcome) == (EXIT_OK, "deployed"), result.to_dict()
    logs = log_calls(calls)
    # one page at the start; then, per push after the first, the one commit it added
    assert all(bounded(argv) for argv in logs) and len(logs) <= 2, logs
    for commit in result.commits:
        trailers = gitrepo.parse_trailers(gitrepo.commit_message(lab.remote.bare, commit))
        assert trailers["Gitopsctl-Suspension"] == ("none",)


def test_a_failed_stage_hands_its_state_to_the_rollback(tmp_path, monkeypatch):
    lab = make_homelab(tmp_path / "lab", *SERVICES, [["web"], ["api"]])
    source = lab.app_commit("v2")
    env, calls = logging_git(tmp_path)
    monkeypatch.setenv("PATH", env["PATH"])

    result = stage(lab.context(), FakeTargets(lab, {"api": ["crashloop"]}), source=source,
                   delay=0, allow_unbuilt=True)

    assert result.exit_code == EXIT_ROLLED_BACK, result.to_dict()
    logs = log_calls(calls)
    # the stage's page, one commit per later push (its deploys, the revert), no second page
    # from a tip: the rollback followed the stage's state
    assert all(bounded(argv) for argv in logs), logs
    assert sum(1 for argv in logs if any(a.startswith("-n") for a in argv)) == 1, logs
