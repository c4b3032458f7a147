"""Pure readings of Deployments and Pods: rollout progress and failing container states."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gitopsctl.targets.rollout import (FAILING_WAIT_REASONS, newest_replicaset, pod_problem, pod_summary,
                                       rollout_status)


def _pod(*statuses, phase="Running"):
    return {"metadata": {"name": "web-abc"}, "status": {"phase": phase, "containerStatuses": list(statuses)}}


def _cs(state, last=None, restarts=0, name="app"):
    return {"name": name, "state": state, "lastState": last or {}, "restartCount": restarts}


@given(st.sampled_from(sorted(FAILING_WAIT_REASONS)), st.integers(0, 1000))
def test_every_failing_wait_reason_is_a_problem(reason, restarts):
    problem = pod_problem(_pod(_cs({"waiting": {"reason": reason, "message": "m"}}, restarts=restarts)))
    assert problem is not None
    assert (problem.reason, problem.restarts, problem.container) == (reason, restarts, "app")
    assert problem.summary() == f"pod web-abc {reason} (restarts {restarts})"


@given(st.sampled_from(["ContainerCreating", "PodInitializing", ""]))
def test_starting_containers_are_not_problems(reason):
    assert pod_problem(_pod(_cs({"waiting": {"reason": reason}}))) is None
    assert pod_problem(_pod(_cs({"running": {"startedAt": "x"}}))) is None


def test_crash_loop_of_oom_kills_is_reported_as_oomkilled_with_exit_code():
    last = {"terminated": {"reason": "OOMKilled", "exitCode": 137}}
    problem = pod_problem(_pod(_cs({"waiting": {"reason": "CrashLoopBackOff"}}, last, restarts=2)))
    assert (problem.reason, problem.exit_code) == ("OOMKilled", 137)
    running_again = pod_problem(_pod(_cs({"running": {}}, last, restarts=1)))
    assert running_again.reason == "OOMKilled"
    assert "last exit code 137" in running_again.evidence()


def test_first_problem_wins_across_containers_and_failed_phase():
    pod = _pod(_cs({"running": {}}, name="sidecar"), _cs({"waiting": {"reason": "ErrImagePull"}}, name="app"))
    assert pod_problem(pod).container == "app"
    assert pod_problem(_pod(phase="Failed")).reason == "Failed"
    assert "not ready" in pod_summary(_pod(_cs({"running": {}})))


def _dep(generation=2, observed=2, want=2, **status):
    return {"metadata": {"generation": generation, "uid": "d1", "annotations": {}},
            "spec": {"replicas": want}, "status": {"observedGeneration": observed, **status}}


def test_rollout_status_follows_kubectl_rules():
    assert rollout_status(_dep(observed=1)).state == "progressing"
    assert "1 of 2 new" in rollout_status(_dep(updatedReplicas=1, replicas=2)).message
    assert "old replicas" in rollout_status(_dep(updatedReplicas=2, replicas=3)).message
    assert "1 of 2 updated" in rollout_status(_dep(updatedReplicas=2, replicas=2, availableReplicas=1)).message
    assert rollout_status(_dep(updatedReplicas=2, replicas=2, availableReplicas=2)).complete
    stuck = _dep(conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                              "message": 'ReplicaSet "x" has timed out progressing.'}])
    assert rollout_status(stuck).failed


def test_newest_replicaset_prefers_the_deployment_revision():
    dep = _dep()
    dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "3"

    def rs(name, rev, owner="d1"):
        return {"metadata": {"name": name, "annotations": {"deployment.kubernetes.io/revision": rev},
                             "ownerReferences": [{"uid": owner}]}}

    sets = [rs("a", "2"), rs("b", "3"), rs("c", "9", owner="someone-else")]
    assert newest_replicaset(sets, dep)["metadata"]["name"] == "b"
    dep["metadata"]["annotations"].clear()
    assert newest_replicaset(sets, dep)["metadata"]["name"] == "b"
    assert newest_replicaset([], dep) is None
