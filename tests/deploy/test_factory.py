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
