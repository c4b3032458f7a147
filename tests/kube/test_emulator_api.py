"""The API emulator spoken to by the real `kubernetes` client over HTTPS (no Docker needed)."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitopsctl.errors import ConfigError
from gitopsctl.sandbox.lab.kube import KubeEmulator
from gitopsctl.sandbox.lab.kube.kubeconfig import kubeconfig_document, write_kubeconfig
from gitopsctl.sandbox.lab.kube.selectors import Selector, SelectorError
from gitopsctl.sandbox.lab.kube.store import DEPLOYMENTS, PODS, merge_patch
from gitopsctl.targets.kubeapi import KubeApi, KubeApiError, RetryPolicy, WatchExpired, resolve_kubeconfig

FAST = RetryPolicy(attempts=2, first_delay=0.05, read_timeout=2)


@pytest.fixture
def emulator(tmp_path):
    with KubeEmulator(tmp_path, simulate=False) as kube:
        yield kube


def _pod(name, **labels):
    return {"metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}


def test_list_get_and_selectors_through_the_real_client(emulator):
    api = KubeApi(emulator.kubeconfig, policy=FAST)
    emulator.store.create(PODS, _pod("a", app="web", tier="front"))
    emulator.store.create(PODS, _pod("b", app="web"))
    emulator.store.create(PODS, _pod("c", app="db"))
    names = lambda sel: sorted(p["metadata"]["name"] for p in api.list_pods("default", sel)[0])  # noqa: E731
    assert names("app=web") == ["a", "b"]
    assert names("app in (web,db),!tier") == ["b", "c"]
    assert names("app!=web") == ["c"]
    assert api.list_pods("default", "app=web")[1] == str(emulator.store.resource_version)
    with pytest.raises(KubeApiError) as caught:
        api.get_deployment("default", "nope")
    assert caught.value.status == 404 and "not found" in caught.value.message


def test_merge_patch_annotations_status_and_generation(emulator):
    api = KubeApi(emulator.kubeconfig, policy=FAST)
    emulator.add_git_repository("flux-system", url="/nowhere")
    patched = api.patch_custom("source.toolkit.fluxcd.io", "v1", "gitrepositories", "flux-system", "flux-system",
                               {"metadata": {"annotations": {"a": "1", "b": "2"}}, "status": {"ignored": True}})
    assert patched["metadata"]["annotations"] == {"a": "1", "b": "2"}
    assert "ignored" not in (patched.get("status") or {})  # status only through /status
    assert patched["metadata"]["generation"] == 1  # metadata changes keep the generation
    again = api.patch_custom("source.toolkit.fluxcd.io", "v1", "gitrepositories", "flux-system", "flux-system",
                             {"metadata": {"annotations": {"a": None}}, "spec": {"interval": "5m"}})
    assert again["metadata"]["annotations"] == {"b": "2"}
    assert again["metadata"]["generation"] == 2


def test_unauthorized_token_is_rejected_and_never_echoed(emulator, tmp_path):
    wrong = "wrong-token-" + "x" * 20
    path = write_kubeconfig(tmp_path / "bad", kubeconfig_document(emulator.api.url, wrong, emulator.api.ca_pem))
    api = KubeApi(path, policy=FAST)
    with pytest.raises(KubeApiError) as caught:
        api.get_deployment("default", "web")
    assert caught.value.status == 401
    assert "credentials" in caught.value.hint
    assert wrong not in str(caught.value.to_dict())
    assert api.redact(f"token {wrong} leaked") == "token *** leaked"


def test_missing_kubeconfig_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as caught:
        resolve_kubeconfig(str(tmp_path / "none"), {})
    assert "does not exist" in caught.value.message
    (tmp_path / "x").write_text("{}")
    assert resolve_kubeconfig(None, {"KUBECONFIG": f"{tmp_path}/x:{tmp_path}/y"}) == tmp_path / "x"


def test_watch_streams_events_and_answers_410_for_expired_versions(emulator):
    api = KubeApi(emulator.kubeconfig, policy=FAST)
    emulator.store.create(PODS, _pod("a", app="web"))
    _, rv = api.list_pods("default", "app=web")
    seen: list[tuple[str, str]] = []

    def writer():
        time.sleep(0.2)
        emulator.store.create(PODS, _pod("b", app="web"))
        emulator.store.create(PODS, _pod("other", app="db"))  # filtered out by the selector
        emulator.store.mutate(PODS, "default", "a", lambda o: o.setdefault("status", {}).update(phase="Running"))
        emulator.store.delete(PODS, "default", "b")

    threading.Thread(target=writer).start()
    started = time.monotonic()
    for event in api.watch_pods("default", "app=web", rv, timeout_seconds=2):
        seen.append((event["type"], event["object"]["metadata"]["name"]))
    assert seen == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    assert 1.5 < time.monotonic() - started < 4  # timeoutSeconds ends the stream

    emulator.store.compact()
    with pytest.raises(WatchExpired):
        list(api.watch_pods("default", "app=web", rv, timeout_seconds=2))


def test_faults_503_and_refused_connections_are_retried_then_reported(emulator):
    api = KubeApi(emulator.kubeconfig, policy=RetryPolicy(attempts=3, first_delay=0.05))
    emulator.store.create(DEPLOYMENTS, {"metadata": {"name": "web", "namespace": "default"}, "spec": {}})
    emulator.faults.unavailable = True
    threading.Timer(0.1, lambda: setattr(emulator.faults, "unavailable", False)).start()
    assert api.get_deployment("default", "web")["metadata"]["name"] == "web"
    emulator.api.refuse_connections()
    with pytest.raises(KubeApiError) as caught:
        api.get_deployment("default", "web")
    assert "failed after 3 attempts" in caught.value.message and "unreachable" in caught.value.message
    emulator.api.accept_connections()
    assert api.get_deployment("default", "web")["metadata"]["name"] == "web"


def test_selector_syntax_errors_are_400():
    with pytest.raises(SelectorError):
        Selector.parse("app in web")
    with pytest.raises(SelectorError):
        Selector.parse(None, "spec.nodeName=x")


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                           lambda inner: st.dictionaries(st.text(max_size=3), inner, max_size=4), max_leaves=12)
json_objects = st.dictionaries(st.text(max_size=3), json_values, max_size=5)


def _without_nulls(value):
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


@given(json_objects, json_objects)
def test_merge_patch_follows_rfc7386(target, patch):
    result = merge_patch(target, patch)
    for key, value in patch.items():
        if value is None:
            assert key not in result
        elif not isinstance(value, dict):
            assert result[key] == value
    for key in target:
        if key not in patch:
            assert result[key] == target[key]
    assert merge_patch(result, patch) == result  # idempotent
    assert merge_patch(target, {}) == target
    assert merge_patch({}, patch) == _without_nulls(patch)
