"""stage on a real git remote with in-memory targets: groups, order, what git and the targets see."""

from __future__ import annotations

from gitopsctl.deploy.stage import stage
from gitopsctl.errors import EXIT_OK, EXIT_ROLLED_BACK

from .conftest import REGISTRY, FakeTargets

KUBE_AND_VM = ({"web": "cluster", "api": "box", "worker": "box"},
               {"cluster": "kubernetes", "box": "vm"})


def subjects(commits):
    return [c["subject"] for c in commits]


def test_two_groups_deploy_one_commit_per_service_and_apply_each_target_once(lab_factory):
    lab = lab_factory(*KUBE_AND_VM, [["web"], ["api", "worker"]])
    source = lab.app_commit("v2")
    targets = FakeTargets(lab)

    result = stage(lab.context(), targets, source=source, delay=0.05, allow_unbuilt=True)

    assert (result.exit_code, result.outcome) == (EXIT_OK, "deployed"), result.to_dict()
    written = lab.written(source)
    short = source[:7]
    assert subjects(written) == [f"deploy({s}): {short} → {REGISTRY}/{s}:{short} [skip ci]"
                                 for s in ("web", "api", "worker")]
    for commit, service in zip(written, ("web", "api", "worker")):
        assert commit["trailers"] == [f"Gitopsctl-Source: {source}", f"Gitopsctl-Stage: {service}",
                                      f"Gitopsctl-Image: {REGISTRY}/{service}:{short}",
                                      "Gitopsctl-Suspension: none"]
    assert [c["files"] for c in written] == [["deploy/web/deployment.yaml"],
                                             ["deploy/box/compose.yaml"], ["deploy/box/compose.yaml"]]
    compose = lab.file_at_tip("deploy/box/compose.yaml")
    assert f"api:{short}" in compose and f"worker:{short}" in compose
    web_rev, group_rev = written[0]["sha"], written[2]["sha"]
    # group 1 at its commit; the delay, one more look; group 2 applied once at its tip,
    # then its two services waited for at the same time (in either order)
    assert targets.calls[:5] == [("prepare",),
                                 ("apply", "cluster", web_rev), ("wait", "web", web_rev),
                                 ("check", "web"), ("apply", "box", group_rev)]
    assert sorted(targets.calls[5:]) == [("wait", "api", group_rev), ("wait", "worker", group_rev)]
    names = [s.name for s in result.steps]
    assert names == ["sync with remote", "plan", "bump web", "web healthy", "stage delay",
                     "web still healthy", "bump api", "bump worker", "api healthy",
                     "worker healthy", "resume image automation"]
    assert result.commits == [c["sha"] for c in written]


def test_a_group_across_two_targets_applies_both_at_the_groups_tip(lab_factory):
    lab = lab_factory(*KUBE_AND_VM, [["web", "api"], ["worker"]])
    source = lab.app_commit("v2")
    targets = FakeTargets(lab)

    result = stage(lab.context(), targets, source=source, delay=0, allow_unbuilt=True)

    assert result.exit_code == EXIT_OK, result.to_dict()
    web, api, worker = (c["sha"] for c in lab.written(source))
    first_group, second_group = targets.calls[1:5], targets.calls[5:]
    # both targets of the first group applied at its tip, each before its service's wait
    assert sorted(first_group) == [("apply", "box", api), ("apply", "cluster", api),
                                   ("wait", "api", api), ("wait", "web", api)]
    for target, service in (("cluster", "web"), ("box", "api")):
        assert first_group.index(("apply", target, api)) < first_group.index(("wait", service, api))
    assert second_group == [("apply", "box", worker), ("wait", "worker", worker)]
    assert "stage delay" not in [s.name for s in result.steps]  # delay 0: no soak


def test_slow_targets_are_waited_for(lab_factory):
    lab = lab_factory(*KUBE_AND_VM, [["web"], ["api", "worker"]])
    source = lab.app_commit("v2")
    targets = FakeTargets(lab, {"web": ["slow"], "worker": ["slow"]})

    result = stage(lab.context(), targets, source=source, delay=0, allow_unbuilt=True)

    assert result.exit_code == EXIT_OK, result.to_dict()
    healthy = {s.name: s for s in result.steps if s.name.endswith(" healthy")}
    assert healthy["web healthy"].elapsed >= 0.2 and healthy["worker healthy"].elapsed >= 0.2
    assert healthy["api healthy"].elapsed < 0.2


def test_a_group_shares_one_failure_deadline_and_the_next_group_gets_its_own(lab_factory):
    lab = lab_factory(*KUBE_AND_VM, [["web"], ["api", "worker"]])
    source = lab.app_commit("v2")
    targets = FakeTargets(lab, {"api": ["slow"]})

    result = stage(lab.context(), targets, source=source, delay=0, timeout=30, allow_unbuilt=True)

    assert result.exit_code == EXIT_OK, result.to_dict()
    # worker waits after a slow api, yet by the same clock: the timeout is the group's
    assert targets.deadlines["api"] == targets.deadlines["worker"]
    assert targets.deadlines["api"] > targets.deadlines["web"]


def test_a_rerun_of_a_deployed_source_writes_nothing(lab_factory):
    lab = lab_factory(*KUBE_AND_VM, [["web"], ["api", "worker"]])
    source = lab.app_commit("v2")
    assert stage(lab.context(), FakeTargets(lab), source=source, delay=0,
                 allow_unbuilt=True).exit_code == EXIT_OK
    tip = lab.remote.remote_head()

    again = stage(lab.context(), FakeTargets(lab), source=source, delay=0, allow_unbuilt=True)

    assert again.exit_code == EXIT_OK and lab.remote.remote_head() == tip
    assert [s.status for s in again.steps if s.name.startswith("bump ")] == ["resumed"] * 3


def test_unhealthy_after_the_delay_rolls_back_every_group_pushed(lab_factory):
    lab = lab_factory(*KUBE_AND_VM, [["web"], ["api", "worker"]])
    source = lab.app_commit("v2")
    targets = FakeTargets(lab, later={"web": "unhealthy"})

    result = stage(lab.context(), targets, source=source, delay=0.05, allow_unbuilt=True)

    assert (result.exit_code, result.outcome) == (EXIT_ROLLED_BACK, "rolled-back")
    written = lab.written(source)
    assert [c["subject"].split(":")[0] for c in written] == ["deploy(web)", "rollback"]
    assert "Reason: web HTTP health: 503" in written[1]["trailers"]
    assert not [c for c in targets.calls if c[:2] == ("apply", "box") and c[2] == written[0]["sha"]]
