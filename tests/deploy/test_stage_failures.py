"""Every way a stage fails, on a real git remote with in-memory targets: one revert, right record."""

from __future__ import annotations

import pytest

from gitopsctl.deploy.rollback import rollback
from gitopsctl.deploy.stage import stage
from gitopsctl.errors import EXIT_HUMAN_NEEDED, EXIT_OK, EXIT_ROLLED_BACK, EXIT_SUPERSEDED
from gitopsctl.repo import PushRejected

from .conftest import FakeTargets, Killed, marker_file

SERVICES = {"web": "cluster", "api": "box", "worker": "box"}
KINDS = {"cluster": "kubernetes", "box": "vm"}
GROUPS = [["web"], ["api", "worker"]]


def kinds_of(commits):
    return [c["subject"].split(":")[0] for c in commits]


def trailer(commit, key):
    return next(t.split(": ", 1)[1] for t in commit["trailers"] if t.startswith(key + ": "))


def run(lab, targets, source, **kw):
    kw.setdefault("delay", 0)
    return stage(lab.context(), targets, source=source, allow_unbuilt=True, **kw)


@pytest.fixture
def lab(lab_factory):
    return lab_factory(SERVICES, KINDS, GROUPS)


def test_first_group_fails_rolls_back_alone_with_the_evidence(lab):
    source = lab.app_commit("v2")
    targets = FakeTargets(lab, {"web": ["crashloop"]})

    result = run(lab, targets, source)

    assert (result.exit_code, result.outcome) == (EXIT_ROLLED_BACK, "rolled-back")
    deploy, revert = lab.written(source)
    assert kinds_of([deploy, revert]) == ["deploy(web)", "rollback"]
    assert revert["subject"].startswith(f"rollback: {source[:7]} — web pod web-7d9c CrashLoopBackOff")
    assert trailer(revert, "Reverts") == deploy["sha"]
    assert trailer(revert, "Gitopsctl-Failed-Target") == "cluster"
    assert trailer(revert, "Gitopsctl-Failed-Check") == "pods"
    assert trailer(revert, "Gitopsctl-Rollback-Of") == source
    assert "panic: config key missing" in trailer(revert, "Evidence")
    assert revert["files"] == ["deploy/web/deployment.yaml"]
    assert lab.file_at_tip("deploy/web/deployment.yaml") == marker_file("web").rstrip("\n")
    # the second group never started; the verification converges every target at the revert
    assert ("apply", "box", deploy["sha"]) not in targets.calls
    assert targets.calls[-5:] == [("apply", "cluster", revert["sha"]), ("wait", "web", revert["sha"]),
                                  ("apply", "box", revert["sha"]), ("wait", "api", revert["sha"]),
                                  ("wait", "worker", revert["sha"])]
    assert result.rollback.verified is True


def test_second_group_fails_and_the_first_is_rolled_back_too(lab):
    source = lab.app_commit("v2")
    before = lab.file_at_tip("deploy/box/compose.yaml")
    targets = FakeTargets(lab, {"worker": ["unhealthy"]})

    result = run(lab, targets, source)

    assert (result.exit_code, result.outcome) == (EXIT_ROLLED_BACK, "rolled-back")
    written = lab.written(source)
    assert kinds_of(written) == ["deploy(web)", "deploy(api)", "deploy(worker)", "rollback"]
    revert = written[-1]
    assert trailer(revert, "Reverts") == ", ".join(c["sha"] for c in reversed(written[:3]))
    assert trailer(revert, "Gitopsctl-Failed-Target") == "box"
    assert sorted(revert["files"]) == ["deploy/box/compose.yaml", "deploy/web/deployment.yaml"]
    assert lab.file_at_tip("deploy/box/compose.yaml") == before
    assert lab.file_at_tip("deploy/web/deployment.yaml") == marker_file("web").rstrip("\n")
    verification = [c for c in targets.calls if len(c) > 2 and c[2] == revert["sha"]]
    assert verification == [("apply", "cluster", revert["sha"]), ("wait", "web", revert["sha"]),
                            ("apply", "box", revert["sha"]), ("wait", "api", revert["sha"]),
                            ("wait", "worker", revert["sha"])]


def test_a_group_of_two_on_one_vm_where_one_fails_reverts_both(lab_factory):
    lab = lab_factory({"api": "box", "worker": "box"}, {"box": "vm"}, [["api", "worker"]])
    source = lab.app_commit("v2")
    targets = FakeTargets(lab, {"worker": ["crashloop"]})

    result = run(lab, targets, source)

    assert result.exit_code == EXIT_ROLLED_BACK, result.to_dict()
    api, worker, revert = lab.written(source)
    # one apply of the shared VM, then both its services waited for at once (either order)
    assert targets.calls[:2] == [("prepare",), ("apply", "box", worker["sha"])]
    assert sorted(targets.calls[2:4]) == [("wait", "api", worker["sha"]), ("wait", "worker", worker["sha"])]
    assert trailer(revert, "Reverts") == f"{worker['sha']}, {api['sha']}"


def test_in_a_group_the_service_with_the_evidence_is_blamed_not_its_bystander(lab_factory):
    lab = lab_factory({"api": "box", "worker": "box"}, {"box": "vm"}, [["api", "worker"]])
    source = lab.app_commit("v2")
    targets = FakeTargets(lab, {"api": ["bystander"], "worker": ["crashloop"]})

    result = run(lab, targets, source)

    assert result.exit_code == EXIT_ROLLED_BACK
    revert = lab.written(source)[-1]
    assert revert["subject"].startswith(f"rollback: {source[:7]} — worker pod worker-7d9c CrashLoopBackOff")
    assert trailer(revert, "Gitopsctl-Failed-Check") == "pods"
    assert "also unhealthy: api: not confirmed healthy" in trailer(revert, "Evidence")
    assert [(s.name, s.status) for s in result.steps if s.name.endswith(" healthy")] == [
        ("api healthy", "failed"), ("worker healthy", "failed")]
    assert result.rollback.verified


def test_in_a_group_a_failure_with_evidence_is_blamed_on_its_service(lab_factory):
    # The group's waits run at once, so worker's starts too; that its wait is stopped the
    # moment api fails is test_group_waits.py's (targets here answer at once).
    lab = lab_factory({"api": "box", "worker": "box"}, {"box": "vm"}, [["api", "worker"]])
    source = lab.app_commit("v2")
    targets = FakeTargets(lab, {"api": ["crashloop"]})

    run(lab, targets, source)

    revert = lab.written(source)[-1]
    assert trailer(revert, "Reason").startswith("api pod api-7d9c CrashLoopBackOff")
    assert trailer(revert, "Gitopsctl-Failed-Check") == "pods"
    waits_before_the_revert = [c for c in targets.of("wait") if c[2] != revert["sha"]]
    assert sorted(waits_before_the_revert) == [("wait", s, lab.written(source)[1]["sha"])
                                               for s in ("api", "worker")]


def test_a_target_that_raises_is_a_failure_not_a_crash(lab):
    source = lab.app_commit("v2")
    result = run(lab, FakeTargets(lab, {"web": ["raises"]}), source)

    assert result.exit_code == EXIT_ROLLED_BACK
    revert = lab.written(source)[-1]
    assert "Kubernetes API failing: 500" in trailer(revert, "Reason")
    assert trailer(revert, "Gitopsctl-Failed-Check") == "deploy"


def test_a_target_that_cannot_be_applied_rolls_back(lab):
    source = lab.app_commit("v2")
    result = run(lab, FakeTargets(lab, apply_fails={"box"}), source)

    written = lab.written(source)
    assert kinds_of(written) == ["deploy(web)", "deploy(api)", "deploy(worker)", "rollback"]
    assert "ssh: connection refused" in trailer(written[-1], "Reason")
    # the verification cannot reach the VM either: a human is needed, and the result says so
    assert (result.exit_code, result.outcome) == (EXIT_HUMAN_NEEDED, "rollback-failed")
    assert result.rollback.verified is False
    assert [r.healthy for r in result.rollback.verification] == [True, False, False]


def test_a_refused_push_in_the_second_group_rolls_back_the_first(lab):
    source = lab.app_commit("v2")
    lab.refuse_pushes("deploy(worker)")
    targets = FakeTargets(lab)

    result = run(lab, targets, source)

    assert (result.exit_code, result.outcome) == (EXIT_ROLLED_BACK, "rolled-back")
    written = lab.written(source)
    assert kinds_of(written) == ["deploy(web)", "deploy(api)", "rollback"]
    assert trailer(written[-1], "Reverts") == f"{written[1]['sha']}, {written[0]['sha']}"
    assert "refused" in trailer(written[-1], "Reason")
    assert ("apply", "box", written[1]["sha"]) not in targets.calls  # never applied half a group


def test_a_refused_first_push_changes_nothing(lab):
    source = lab.app_commit("v2")
    lab.refuse_pushes("deploy(web)")
    tip = lab.remote.remote_head()
    targets = FakeTargets(lab)

    result = run(lab, targets, source)

    assert (result.outcome, result.exit_code) == ("failed", PushRejected.exit_code)
    assert "refused" in result.error["message"] and result.rollback is None
    assert lab.remote.remote_head() == tip
    assert targets.of("apply") == []


def test_the_rollbacks_own_push_refused_is_exit_3_and_a_rollback_later_finishes(lab):
    source = lab.app_commit("v2")
    lab.refuse_pushes("rollback:")

    result = run(lab, FakeTargets(lab, {"web": ["unhealthy"]}), source)

    assert (result.exit_code, result.outcome) == (EXIT_HUMAN_NEEDED, "rollback-failed")
    assert result.rollback.error["kind"] and "refused" in result.rollback.notes[-1]
    assert kinds_of(lab.written(source)) == ["deploy(web)"]  # the failed release is still there

    lab.allow_pushes()
    done = rollback(lab.context(), FakeTargets(lab), source=source, reason="web unhealthy")
    assert done.exit_code == EXIT_ROLLED_BACK and done.verified
    assert kinds_of(lab.written(source)) == ["deploy(web)", "rollback"]


def test_a_kill_after_the_push_and_a_rerun_finish_without_a_second_commit(lab):
    source = lab.app_commit("v2")
    with pytest.raises(Killed):
        run(lab, FakeTargets(lab, {"api": ["kill"]}), source)
    assert kinds_of(lab.written(source)) == ["deploy(web)", "deploy(api)", "deploy(worker)"]

    result = run(lab, FakeTargets(lab), source)

    assert (result.exit_code, result.outcome) == (EXIT_OK, "deployed")
    assert kinds_of(lab.written(source)) == ["deploy(web)", "deploy(api)", "deploy(worker)"]
    assert [s.status for s in result.steps if s.name.startswith("bump ")] == ["resumed"] * 3


def test_a_kill_during_the_rollback_and_a_rerun_finish_without_a_second_revert(lab):
    source = lab.app_commit("v2")
    with pytest.raises(Killed):  # killed while verifying the revert it pushed
        run(lab, FakeTargets(lab, {"worker": ["unhealthy"], "web": ["healthy", "kill"]}), source)
    assert kinds_of(lab.written(source))[-1] == "rollback"

    targets = FakeTargets(lab)
    result = run(lab, targets, source)

    assert (result.exit_code, result.outcome) == (EXIT_ROLLED_BACK, "rolled-back")
    assert result.rollback.already and result.rollback.verified
    assert kinds_of(lab.written(source)) == ["deploy(web)", "deploy(api)", "deploy(worker)",
                                             "rollback"]
    assert [c[1] for c in targets.of("wait")] == ["web", "api", "worker"]


def test_an_older_source_is_superseded_and_touches_nothing(lab):
    old = lab.app_commit("v2")
    new = lab.app_commit("v3")
    assert run(lab, FakeTargets(lab), new).exit_code == EXIT_OK
    tip = lab.remote.remote_head()
    targets = FakeTargets(lab)

    result = run(lab, targets, old)

    assert (result.exit_code, result.outcome) == (EXIT_SUPERSEDED, "superseded")
    assert lab.remote.remote_head() == tip
    assert targets.of("apply") == [] and targets.of("wait") == []


def test_a_manual_rollback_twice_reverts_once(lab):
    source = lab.app_commit("v2")
    assert run(lab, FakeTargets(lab), source).exit_code == EXIT_OK

    first = rollback(lab.context(), FakeTargets(lab))
    second = rollback(lab.context(), FakeTargets(lab))

    assert first.exit_code == EXIT_ROLLED_BACK and first.commit
    assert [r["service"] for r in first.reverted] == ["worker", "api", "web"]
    assert second.already and second.commit == first.commit
    assert kinds_of(lab.written(source)).count("rollback") == 1
