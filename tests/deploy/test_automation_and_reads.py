"""Image automation on every Kubernetes target; verify and status through the same TargetSet."""

from __future__ import annotations

import pytest

from gitopsctl.deploy.stage import stage
from gitopsctl.deploy.status import status
from gitopsctl.deploy.verify import verify, watched_paths
from gitopsctl.errors import EXIT_FINDINGS, EXIT_OK, EXIT_ROLLED_BACK, ConfigError, UsageError

from .conftest import FakeTargets

SERVICES = {"web": "north", "shop": "south", "api": "box"}
KINDS = {"north": "kubernetes", "south": "kubernetes", "box": "vm"}


def test_a_rollback_suspends_every_targets_automation_and_a_good_stage_resumes_them(lab_factory):
    lab = lab_factory(SERVICES, KINDS, [["web", "shop"], ["api"]],
                      automations={"north": "north-images", "south": "south-images"})
    bad = lab.app_commit("v2")

    failed = stage(lab.context(), FakeTargets(lab, {"api": ["unhealthy"]}), source=bad, delay=0,
                   allow_unbuilt=True)

    assert failed.exit_code == EXIT_ROLLED_BACK
    revert = lab.written(bad)[-1]
    assert sorted(revert["files"]) == ["deploy/box/compose.yaml", "deploy/shop/deployment.yaml",
                                       "deploy/web/deployment.yaml", "flux/north/automation.yaml",
                                       "flux/south/automation.yaml"]
    for target in ("north", "south"):
        assert "suspend: true" in lab.file_at_tip(f"flux/{target}/automation.yaml")

    good = lab.app_commit("v3")
    done = stage(lab.context(), FakeTargets(lab), source=good, delay=0, allow_unbuilt=True)

    assert done.exit_code == EXIT_OK, done.to_dict()
    resume = lab.written(good)[-1]
    assert resume["subject"].startswith(f"chore: resume image automation after deploy of {good[:7]}")
    assert resume["trailers"] == ["Gitopsctl-Resume-Automation: flux-system/north-images",
                                  "Gitopsctl-Resume-Automation: flux-system/south-images"]
    for target in ("north", "south"):
        assert "suspend: false" in lab.file_at_tip(f"flux/{target}/automation.yaml")


def test_verify_observes_the_services_of_the_targets_asked_for(lab_factory):
    lab = lab_factory(SERVICES, KINDS, [["web"], ["shop"], ["api"]])
    targets = FakeTargets(lab, later={"api": "unhealthy"})

    everything = verify(lab.context(), targets)
    south = verify(lab.context(), targets, on_targets=["south"])
    named = verify(lab.context(), targets, services=["api", "web"])

    assert everything.exit_code == EXIT_FINDINGS
    assert [(r.target, r.healthy) for r in everything.reports] == [("web", True), ("shop", True),
                                                                   ("api", False)]
    assert south.exit_code == EXIT_OK and [r.target for r in south.reports] == ["shop"]
    assert [r.target for r in named.reports] == ["web", "api"]  # in stage order
    with pytest.raises(UsageError):
        verify(lab.context(), targets, services=["web"], on_targets=["south"])
    with pytest.raises(ConfigError) as info:
        verify(lab.context(), targets, services=["nope"])
    assert "api" in info.value.hint
    assert targets.of("apply") == [] and targets.of("wait") == []  # read-only
    assert watched_paths(lab.context().config, "api") == ["deploy/box/compose.yaml"]


def test_status_names_each_services_target_and_its_health(lab_factory):
    lab = lab_factory(SERVICES, KINDS, [["web"], ["shop"], ["api"]])
    source = lab.app_commit("v2")
    assert stage(lab.context(), FakeTargets(lab), source=source, delay=0,
                 allow_unbuilt=True).exit_code == EXIT_OK

    result = status(lab.context(), FakeTargets(lab, later={"shop": "unhealthy"}))

    rows = {s["service"]: s for s in result.services}
    assert {name: row["target"] for name, row in rows.items()} == SERVICES
    assert all(row["source"] == source for row in rows.values())
    assert result.unhealthy == ["shop"] and result.exit_code == EXIT_FINDINGS
    assert [h["service"] for h in result.history] == ["api", "shop", "web"]
