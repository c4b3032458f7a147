"""What one `gitopsctl sandbox demo` run must show, judged from its JSON document and from
the machine afterwards. The suite runs the demo once, from a wheel installed into a fresh
virtualenv (tests/packaging/test_install.py), so the story is checked as a user gets it.
"""

from __future__ import annotations

import json

from tests.sandbox.conftest import lab_containers_and_images, processes_naming


def judge_demo(returncode: int, stdout: str, stderr: str, *, workdir, docker_engine, docker_client,
               containers_before: set[str]) -> None:
    """Four scenarios played as they should, the git record and `status` agree, nothing left."""
    try:
        doc = json.loads(stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"no JSON document; stderr tail:\n{stderr[-4000:]}") from None
    assert returncode == 0, json.dumps(doc, indent=1)[-4000:]
    assert doc["ok"] is True
    assert doc["engine"] == docker_engine.docker_host  # reused, not a second engine

    scenarios = {s["name"]: s for s in doc["scenarios"]}
    assert list(scenarios) == ["good-commit", "frontend-break", "backend-break", "backend-incompatible"]
    assert all(s["ok"] and s["outcome"] == s["expected"] for s in scenarios.values())
    assert [s["expected"] for s in scenarios.values()] == ["deployed", "rolled-back", "rolled-back",
                                                           "rolled-back"]

    good, front, back = scenarios["good-commit"], scenarios["frontend-break"], scenarios["backend-break"]
    apart = scenarios["backend-incompatible"]
    # the commits each pipeline wrote, read back from the remote, oldest first
    assert [c["subject"].split(":")[0] for c in good["commits"]] == ["deploy(frontend)", "deploy(backend)"]
    assert [c["subject"].split(":")[0] for c in front["commits"]] == ["deploy(frontend)", "rollback"]
    assert [c["subject"].split(":")[0] for c in back["commits"]] == [
        "deploy(frontend)", "deploy(backend)", "rollback"]
    assert [c["subject"].split(":")[0] for c in apart["commits"]] == [
        "deploy(frontend)", "deploy(backend)", "rollback"]
    assert all("[skip ci]" in c["subject"] for s in scenarios.values() for c in s["commits"])
    # what runs: the good commit stays live through every failure, and the frontend reaches
    # the backend through its route (/api/version)
    assert good["served_after"] == {"frontend": good["source"], "backend": good["source"],
                                    "route": good["source"]}
    assert front["served_after"] == back["served_after"] == apart["served_after"] == good["served_after"]
    assert "CrashLoopBackOff" in front["rollback_reason"]
    assert back["rollback_reason"]
    # both halves healthy on their own; only asking the frontend through the route shows it
    assert "frontend→backend" in apart["rollback_reason"] and "HTTP 502" in apart["rollback_reason"]
    for s in scenarios.values():
        assert s["timings"]["build"] > 0 and s["timings"]["stage"] > 0
    assert good["timings"]["rollback"] is None
    assert front["timings"]["rollback"] > 0 and back["timings"]["rollback"] > 0 and apart["timings"]["rollback"] > 0
    assert good["timings"]["stage_delay"] >= 2

    # the audit trail is the remote's git log, newest first, rollbacks with their reason
    log = doc["log"]
    assert log[0]["kind"] == "rollback" and log[0]["source"] == apart["source"]
    assert [e["commit"] for e in log if e["kind"] == "rollback"] == [
        apart["commits"][-1]["commit"], back["commits"][-1]["commit"], front["commits"][-1]["commit"]]
    assert all(e["reason"] for e in log if e["kind"] == "rollback")
    # `gitopsctl status` agrees: the good commit is live and healthy on both targets
    status = {s["service"]: s for s in doc["status"]["services"]}
    assert {k: v["source"] for k, v in status.items()} == {"frontend": good["source"], "backend": good["source"]}
    assert all(v["health"]["healthy"] for v in status.values())

    # nothing is left: checked here independently of the demo's own report
    assert doc["cleanup"]["leftovers"] == []
    assert not workdir.exists()
    assert processes_naming(workdir) == []
    assert lab_containers_and_images(docker_client, doc["cleanup"]["checked"]) == []
    assert {c.id for c in docker_client.containers.list(all=True)} <= containers_before
    assert docker_engine.ping()  # the borrowed engine is still there for everyone else
