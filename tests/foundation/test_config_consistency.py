"""Config `consistency:`: pairs of services that must agree after a deploy."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitopsctl import config
from gitopsctl.errors import ConfigError

from tests.fixtures.configs import kube_target, service, v2_text, vm_target

URL = "http://127.0.0.1:30080/api/version"


def text(pairs) -> str:
    return v2_text({"web": service("web", "cluster", workloads=[{"kind": "Deployment", "name": "web"}]),
                    "api": service("api", "box", compose_services=["api"])},
                   {"cluster": kube_target(), "box": vm_target()}, consistency=pairs)


def load(tmp_path: Path, body: str) -> config.Config:
    path = tmp_path / "gitopsctl.yaml"
    path.write_text(body)
    return config.load(path, environ={})


def test_a_pair_loads_with_its_defaults(tmp_path):
    c = load(tmp_path, text([{"from": "web", "to": "api", "url": URL}]))
    (pair,) = c.consistency
    assert (pair.caller, pair.callee, pair.url, pair.field_name, pair.timeout) == ("web", "api", URL, None, 30.0)
    assert pair.label == "web→api"


def test_no_pair_is_no_check(tmp_path):
    assert load(tmp_path, text([])).consistency == ()


@pytest.mark.parametrize("pair, key, words", [
    ({"from": "web", "to": "db", "url": URL}, "consistency[0].to", "unknown service 'db'"),
    ({"from": "web", "to": "web", "url": URL}, "consistency[0].to", "paired with itself"),
    ({"from": "web", "to": "api", "url": "ftp://x/api"}, "consistency[0].url", "a string matching"),
    ({"from": "web", "to": "api", "url": URL, "timeout": "0s"}, "consistency[0].timeout", "between 1s and 600s"),
    ({"from": "web", "to": "api", "url": URL, "field": "a..b"}, "consistency[0].field", "a string matching"),
    ({"to": "api", "url": URL}, "consistency[0].from", "required key is missing"),
    ({"from": "web", "to": "api", "url": URL, "expect": "x"}, "consistency[0].expect", "unknown key"),
])
def test_a_wrong_pair_names_its_key_and_line(tmp_path, pair, key, words):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text([pair]))
    err = info.value
    assert err.details["key"] == key and words in err.message, err.message
    assert err.location is not None and err.location.line > 1 and err.hint


def test_the_same_pair_twice_is_refused(tmp_path):
    pair = {"from": "web", "to": "api", "url": URL}
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text([pair, dict(pair)]))
    assert "listed twice" in info.value.message and info.value.details["key"] == "consistency[1]"
