"""`gitopsctl init` on real git repositories: what it proposes, and that config and check take it."""

from __future__ import annotations

import json

import pytest

from tests.init.layouts import (compose_layout, flux2_layout, git_repo, gitopsctl,
                                kustomize_only_layout, this_repository, two_clusters_layout,
                                unmarked_layout)


def _effective(repo) -> dict:
    result = gitopsctl("-o", "json", "config", cwd=repo)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)["effective"]


def _checks(service: dict) -> list[dict]:
    return [{k: v for k, v in check.items() if v is not None} for check in service["health"]]


def _init_then_config_and_check(repo) -> dict:
    result = gitopsctl("init", cwd=repo)
    assert result.returncode == 0, result.stderr
    assert (repo / "gitopsctl.yaml").is_file()
    check = gitopsctl("check", cwd=repo)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "0 error(s)" in check.stdout
    return _effective(repo)


def test_this_repository_binds_frontend_to_its_cluster_and_backend_to_its_vm(tmp_path):
    repo = this_repository(tmp_path / "homelab")
    config = _init_then_config_and_check(repo)

    assert config["version"] == 2
    assert config["registry"]["url"] == "harbor.lan" and config["registry"]["project"] == "homelab"
    frontend, backend = config["services"]["frontend"], config["services"]["backend"]
    cluster, vm = config["targets"][frontend["target"]], config["targets"][backend["target"]]
    assert cluster["kind"] == "kubernetes" and vm["kind"] == "vm"
    assert frontend["target"] == "homelab" and backend["target"] == "backend-vm"

    assert frontend["policy"] == "flux-system:frontend"
    assert frontend["image"] == "frontend" and frontend["context"] == "examples/frontend"
    assert frontend["paths"] == ["clusters/homelab/apps/frontend"]
    assert frontend["workloads"] == [{"kind": "Deployment", "name": "frontend",
                                      "namespace": "default"}]
    assert cluster["git_repository"] == {"name": "flux-system", "namespace": "flux-system"}
    # apps dependsOn routing: both, in the order gitopsctl reconciles them
    assert cluster["kustomizations"] == [{"name": "routing", "namespace": "flux-system"},
                                         {"name": "apps", "namespace": "flux-system"}]
    assert cluster["image_update_automation"] == {"name": "homelab", "namespace": "flux-system"}

    assert backend["policy"] == "flux-system:backend" and backend["context"] == "examples/backend"
    assert backend["paths"] == ["clusters/homelab/backend-vm"]
    assert backend["compose_services"] == ["backend"]
    assert _checks(backend) == [{"compose": "backend"}]
    assert vm["compose_file"] == "clusters/homelab/backend-vm/docker-compose.yml"
    assert vm["sealed_secrets"] == ["clusters/homelab/backend-vm/backend-secrets.sealed.yaml"]
    assert vm["env_file"] == ".gitopsctl/backend.env"
    assert config["stage"]["order"] == ["frontend", "backend"]   # the cluster first


def test_a_nodeport_service_in_front_of_a_workload_is_offered_as_its_http_check(tmp_path):
    repo = this_repository(tmp_path / "homelab")
    assert gitopsctl("init", cwd=repo).returncode == 0
    path = repo / "gitopsctl.yaml"
    text = path.read_text()
    offered = "    #   health:\n    #     - http: http://NODE:30080/healthz\n    health: []\n"
    assert offered in text        # the Service's nodePort and the readiness probe's path
    # taking the offer as written (with a node's address) gives a config that loads
    path.write_text(text.replace(offered, "    health:\n      - http: http://127.0.0.1:30080/healthz\n"))
    assert _checks(_effective(repo)["services"]["frontend"]) == [
        {"http": "http://127.0.0.1:30080/healthz"}]


def test_flux2_layout_follows_bootstrap_and_the_apps_kustomization(tmp_path):
    repo = flux2_layout(tmp_path / "fleet")
    config = _init_then_config_and_check(repo)

    assert list(config["targets"]) == ["production"]          # the cluster directory's name
    cluster = config["targets"]["production"]
    # apps dependsOn infrastructure: both, in the order gitopsctl reconciles them
    assert cluster["kustomizations"] == [{"name": "infrastructure", "namespace": "flux-system"},
                                         {"name": "apps", "namespace": "flux-system"}]
    assert config["git"]["branch"] == "trunk"                 # what the GitRepository follows
    assert config["registry"]["url"] == "registry.lan" and config["registry"]["project"] == "fleet"
    podinfo, db = config["services"]["podinfo"], config["services"]["db"]
    assert podinfo["target"] == db["target"] == "production"
    # the overlay's `namespace: apps` wins over the workloads' own (none)
    assert podinfo["workloads"] == [{"kind": "Deployment", "name": "podinfo", "namespace": "apps"}]
    assert podinfo["paths"] == ["apps/base/podinfo"] and podinfo["context"] == "src/podinfo"
    # a `:tag` marker in kustomize `images:`: the StatefulSet is found by its image name
    assert db["policy"] == "flux-system:db" and db["paths"] == ["apps/production"]
    assert db["workloads"] == [{"kind": "StatefulSet", "name": "db", "namespace": "apps"}]
    assert db["context"] == "CHANGE-ME"                       # no src/db: a marked placeholder


def test_two_compose_services_in_one_file_become_two_services_on_one_vm(tmp_path):
    repo = compose_layout(tmp_path / "vm-only")
    config = _init_then_config_and_check(repo)

    assert set(config["services"]) == {"api", "worker"}      # db carries no marker
    assert list(config["targets"]) == ["stack"]
    vm = config["targets"]["stack"]
    assert vm["kind"] == "vm" and vm["compose_file"] == "stack/compose.yaml"
    assert vm["compose_project"] == "home"                    # the file's own `name:`
    api, worker = config["services"]["api"], config["services"]["worker"]
    assert api["compose_services"] == ["api"] and worker["compose_services"] == ["worker"]
    assert _checks(api) == [{"compose": "api"}]
    assert worker["health"] == []                             # no healthcheck, no HTTP known
    assert api["paths"] == worker["paths"] == ["stack"]


def test_values_it_cannot_know_are_placeholders_marked_with_how_to_fill_them(tmp_path):
    repo = compose_layout(tmp_path / "vm-only")
    result = gitopsctl("-o", "json", "init", cwd=repo)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    lines = (repo / "gitopsctl.yaml").read_text().splitlines()
    keys = {t["key"] for t in doc["todos"]}
    assert {"targets.stack.host", "targets.stack.user", "services.api.context"} <= keys
    for todo in doc["todos"]:
        key_line = lines[todo["line"] - 1]
        assert key_line.strip().startswith(todo["key"].rsplit(".", 1)[1] + ":"), key_line
        assert "TODO(gitopsctl init):" in "\n".join(lines[todo["line"] - 4:todo["line"] - 1])
    assert "    host: CHANGE-ME.lan" in lines
    assert doc["written"] is True and doc["ok"] is True


def test_without_markers_it_says_so_exits_2_and_writes_nothing(tmp_path):
    repo = unmarked_layout(tmp_path / "plain")
    result = gitopsctl("init", cwd=repo)
    assert result.returncode == 2
    assert "no Flux setter marker found" in result.stderr
    assert '"$imagepolicy"' in result.stderr                  # the hint shows how to mark one
    assert not (repo / "gitopsctl.yaml").exists()

    as_json = gitopsctl("-o", "json", "init", cwd=repo)
    doc = json.loads(as_json.stdout)
    assert as_json.returncode == 2 and doc["ok"] is False and doc["error"]["exit_code"] == 2
    assert not (repo / "gitopsctl.yaml").exists()


@pytest.mark.parametrize("args", [(), ("--yes",)])
def test_an_existing_config_is_not_overwritten_without_force(tmp_path, args):
    repo = compose_layout(tmp_path / "vm-only")
    config = repo / "gitopsctl.yaml"
    config.write_bytes(b"# mine, hand-written\nversion: 2\n")
    before = config.read_bytes()

    refused = gitopsctl("init", *args, cwd=repo)
    assert refused.returncode == 2
    assert str(config) in refused.stderr and "--force" in refused.stderr
    assert config.read_bytes() == before

    printed = gitopsctl("init", "--dry-run", cwd=repo)
    assert printed.returncode == 0 and "compose_file: stack/compose.yaml" in printed.stdout
    assert config.read_bytes() == before

    forced = gitopsctl("init", "--force", cwd=repo)
    assert forced.returncode == 0, forced.stderr
    assert config.read_bytes() != before
    assert _effective(repo)["targets"]["stack"]["kind"] == "vm"


def test_dry_run_json_shows_what_was_discovered_and_writes_nothing(tmp_path):
    repo = this_repository(tmp_path / "homelab")
    result = gitopsctl("-o", "json", "init", "--print", cwd=repo)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert not (repo / "gitopsctl.yaml").exists()
    assert doc["written"] is False and doc["dry_run"] is True
    found = doc["discovered"]
    assert sorted((m["file"], m["policy"]) for m in found["markers"]) == [
        ("clusters/homelab/apps/frontend/deployment.yaml", "flux-system:frontend"),
        ("clusters/homelab/backend-vm/docker-compose.yml", "flux-system:backend")]
    assert {k["name"] for k in found["kustomizations"]} == {
        "flux-system", "apps", "routing", "infrastructure", "infrastructure-secrets"}
    assert [c["file"] for c in found["compose_files"]] == [
        "clusters/homelab/backend-vm/docker-compose.yml"]
    assert {p["name"] for p in found["image_policies"]} == {"frontend", "backend"}
    assert doc["proposal"]["services"]["frontend"]["target"] == "homelab"
    assert doc["yaml"].startswith("# gitopsctl.yaml, written by `gitopsctl init`")


def test_two_bootstrapped_clusters_give_two_targets_and_a_service_on_each(tmp_path):
    repo = two_clusters_layout(tmp_path / "fleet")
    config = _init_then_config_and_check(repo)

    assert sorted(config["targets"]) == ["production", "staging"]
    services = config["services"]
    assert sorted(services) == ["web-production", "web-staging"]   # one policy name, two trees
    for cluster in ("production", "staging"):
        service = services[f"web-{cluster}"]
        assert service["target"] == cluster and service["paths"] == [f"apps/{cluster}"]
        assert service["workloads"] == [{"kind": "DaemonSet", "name": "web",
                                         "namespace": f"web-{cluster}"}]


def test_markers_no_flux_kustomization_applies_are_bound_with_a_todo(tmp_path):
    repo = kustomize_only_layout(tmp_path / "plain-kustomize")
    result = gitopsctl("-o", "json", "init", cwd=repo)
    assert result.returncode == 0, result.stderr
    todos = {t["key"] for t in json.loads(result.stdout)["todos"]}
    assert {"targets.kubernetes", "targets.kubernetes.kustomizations",
            "targets.kubernetes.git_repository"} <= todos
    config = _effective(repo)
    assert config["services"]["web"]["target"] == "kubernetes"
    assert config["services"]["web"]["workloads"] == [
        {"kind": "Deployment", "name": "web", "namespace": "default"}]
    assert gitopsctl("check", cwd=repo).returncode == 0


def test_a_big_generated_file_without_markers_is_passed_over(tmp_path):
    repo = compose_layout(tmp_path / "vm-only")
    bundle = repo / "crds" / "bundle.yaml"
    bundle.parent.mkdir()
    line = "# " + "x" * 1000 + "\n"
    bundle.write_text("apiVersion: v1\nkind: List\nitems: []\n" + line * 9000)   # ~9 MiB
    result = gitopsctl("init", cwd=repo)
    assert result.returncode == 0, result.stderr
    assert "crds/bundle.yaml: skipped" in result.stderr
    assert set(_effective(repo)["services"]) == {"api", "worker"}


def test_a_policy_that_would_never_pick_a_build_tag_is_a_todo(tmp_path):
    semver = ("apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata:\n"
              "  name: api\n  namespace: flux-system\nspec:\n  imageRepositoryRef:\n    name: api\n"
              "  policy:\n    semver:\n      range: '>=1.0.0'\n")
    repo = git_repo(tmp_path / "semver", {
        "flux/policy.yaml": semver,
        "compose.yaml": 'services:\n  api:\n    image: registry.lan/home/api:1.2.3 '
                        '# {"$imagepolicy": "flux-system:api"}\n',
    })
    result = gitopsctl("-o", "json", "init", "--dry-run", cwd=repo)
    assert result.returncode == 0, result.stderr
    todos = {t["key"]: t["text"] for t in json.loads(result.stdout)["todos"]}
    assert "orders by semver" in todos["registry.tag_template"]
    assert "flux/policy.yaml" in todos["registry.tag_template"]
