"""The production TargetSet builds targets by the names in gitopsctl.yaml (nothing is contacted)."""

from __future__ import annotations

import pytest

from gitopsctl.errors import ConfigError
from gitopsctl.targets.factory import ConfiguredTargets, production_targets


def test_services_on_one_vm_share_its_target_and_each_has_its_own_view(lab_factory):
    lab = lab_factory({"api": "box", "worker": "box", "cron": "shed"}, {"box": "vm", "shed": "vm"},
                      [["api", "worker"], ["cron"]])
    targets = production_targets(lab.context())

    api, worker, cron = (targets.for_service(s) for s in ("api", "worker", "cron"))

    assert targets.for_service("api") is api  # built once
    assert api.vm is worker.vm and api.vm is not cron.vm
    assert (api.vm.name, cron.vm.name) == ("box", "shed")
    assert [targets.target_name(s) for s in ("api", "worker", "cron")] == ["box", "box", "shed"]


def test_an_unknown_service_names_the_known_ones(lab_factory):
    lab = lab_factory({"api": "box"}, {"box": "vm"}, [["api"]])
    with pytest.raises(ConfigError) as info:
        ConfiguredTargets(lab.context().config).for_service("nope")
    assert "api" in info.value.hint


def test_services_on_one_kubernetes_target_share_what_its_apply_did(lab_factory):
    lab = lab_factory({"web": "cluster", "admin": "cluster", "edge": "other"},
                      {"cluster": "kubernetes", "other": "kubernetes"}, [["web", "admin"], ["edge"]])
    targets = production_targets(lab.context())

    web, admin, edge = (targets.for_service(s) for s in ("web", "admin", "edge"))

    # The engine applies a target once per group: the service not applied through judges
    # Flux against the same reconcile request (and the same moved-on branch).
    web._applies["last"] = ("a" * 40, "token-1")
    assert admin._applied == ("a" * 40, "token-1") and edge._applied is None
    assert web._moved is admin._moved and web._moved is not edge._moved
    assert [w.name for w in web.workloads] == ["web"] and [w.name for w in admin.workloads] == ["admin"]
