"""Setter markers, the ImagePolicies they name, and the image automation that must not fight gitopsctl."""

from __future__ import annotations

import re
import shutil

from hypothesis import given, settings
from hypothesis import strategies as st

from gitopsctl import imagetags, setters
from gitopsctl.deploy import automation
from gitopsctl.checks import runner
from tests.clusters.conftest import CLUSTERS, HOMELAB, REPO_ROOT, built, by_kind

IMAGE_API = "image.toolkit.fluxcd.io/v1"


def _image_objects(kind: str) -> dict[tuple[str, str], dict]:
    found = by_kind(built(HOMELAB / "image-automation"), kind, "image.toolkit.fluxcd.io/")
    assert all(o["apiVersion"] == IMAGE_API for o in found.values())
    return found


def _markers() -> list[setters.Marker]:
    return [m for path in setters.yaml_files([CLUSTERS]) for m in setters.scan_file(path).markers]


def _go_pattern(pattern: str) -> re.Pattern:
    # Flux's filterTags is a Go (RE2) regexp; (?P<name>) and the rest used here mean the same in Python.
    return re.compile(pattern)


def test_every_marker_names_an_existing_image_policy(homelab_config):
    policies = _image_objects("ImagePolicy")
    markers = _markers()
    assert {m.policy for m in markers} == {s.policy for s in homelab_config.services.values()}
    for marker in markers:
        namespace, name = marker.policy.split(":")
        assert (namespace, name) in policies, marker.location
        assert marker.field == "image", "gitopsctl writes whole references"
        # the value the marker holds now is one Flux's policy would elect, too
        tag = marker.value.rsplit(":", 1)[1]
        pattern = _go_pattern(policies[(namespace, name)]["spec"]["filterTags"]["pattern"])
        assert pattern.match(tag), (marker.location, tag)


def test_each_service_has_exactly_one_marker_under_its_paths(homelab_config):
    for name, service in homelab_config.services.items():
        paths = setters.service_paths(homelab_config, name, REPO_ROOT)
        found = [m for p in setters.yaml_files(paths) for m in setters.scan_file(p).markers
                 if m.policy == service.policy]
        assert len(found) == 1, name
        assert found[0].value.startswith(homelab_config.image_repository(name) + ":")


def test_image_repositories_scan_harbor_with_credentials(homelab_config):
    repositories = _image_objects("ImageRepository")
    policies = _image_objects("ImagePolicy")
    for name, service in homelab_config.services.items():
        namespace, policy_name = service.policy.split(":")
        policy = policies[(namespace, policy_name)]["spec"]
        repo = repositories[(namespace, policy["imageRepositoryRef"]["name"])]["spec"]
        assert repo["image"] == homelab_config.image_repository(name) == f"harbor.lan/homelab/{name}"
        assert repo["secretRef"] == {"name": "harbor-credentials"}
        assert policy["filterTags"]["extract"] == "$ts"
        assert policy["policy"] == {"numerical": {"order": "asc"}}
    # the secret they name is shipped (sealed) into the same namespace
    sealed = by_kind(built(HOMELAB / "infrastructure/secrets"), "SealedSecret")
    assert ("flux-system", "harbor-credentials") in sealed


@settings(max_examples=200, deadline=None)
@given(sha=st.text(alphabet="0123456789abcdef", min_size=40, max_size=40),
       older=st.integers(min_value=0, max_value=2**40), later=st.integers(min_value=1, max_value=2**20))
def test_policies_elect_the_newest_build_gitopsctl_tags(homelab_config, sha, older, later):
    """The tag gitopsctl pushes (registry.tag_template) is what each ImagePolicy orders, by time."""
    for policy in _image_objects("ImagePolicy").values():
        pattern = _go_pattern(policy["spec"]["filterTags"]["pattern"])
        tags = [imagetags.render_tag(homelab_config.registry.tag_template, sha, ts)
                for ts in (older, older + later)]
        extracted = [int(pattern.match(t).group("ts")) for t in tags]
        assert extracted == [older, older + later]  # numerical asc: the later build wins
        assert pattern.match(sha[:7]) is None       # the human-readable <sha7> tag never does
        assert pattern.match(tags[0] + "-debug") is None


def _the_automation() -> dict:
    automations = _image_objects("ImageUpdateAutomation")
    assert list(automations) == [("flux-system", "homelab")]
    return automations[("flux-system", "homelab")]


def test_automation_is_the_one_rollback_suspends(homelab_config):
    ref = homelab_config.target_of("frontend").image_update_automation
    assert (ref.namespace, ref.name) == ("flux-system", "homelab")
    found = automation.find(CLUSTERS, ref.name, ref.namespace)
    assert found is not None and found.suspended is False
    assert found.path == HOMELAB / "image-automation/automation.yaml"


def test_automation_commits_skip_ci_and_use_setters(homelab_config):
    spec = _the_automation()["spec"]
    assert spec["update"]["strategy"] == "Setters"
    assert spec["sourceRef"] == {"kind": "GitRepository", "name": "flux-system"}
    assert spec["git"]["checkout"]["ref"]["branch"] == homelab_config.git.branch
    assert spec["git"]["push"]["branch"] == homelab_config.git.branch
    subject = spec["git"]["commit"]["messageTemplate"].splitlines()[0]
    assert homelab_config.git.skip_marker in subject


def test_automation_never_reaches_a_gitopsctl_marker(homelab_config):
    spec = _the_automation()["spec"]
    scope = (REPO_ROOT / spec["update"]["path"]).resolve()
    assert scope.is_dir() and scope.is_relative_to(HOMELAB)
    for marker in _markers():
        path = (REPO_ROOT / marker.file).resolve()
        assert not path.is_relative_to(scope), marker.location
    for name in homelab_config.services:
        for path in setters.service_paths(homelab_config, name, REPO_ROOT):
            assert not path.resolve().is_relative_to(scope)
    # second line of defence: the policies gitopsctl's markers name are not selected
    wanted = spec["policySelector"]["matchLabels"]
    for policy in _image_objects("ImagePolicy").values():
        labels = policy["metadata"].get("labels") or {}
        assert not all(labels.get(k) == v for k, v in wanted.items()), policy["metadata"]["name"]


def test_rollback_suspension_round_trip_keeps_the_check_clean(tmp_path, homelab_config):
    """What rollback and the next stage write, on a copy: one line each, check stays clean."""
    shutil.copytree(CLUSTERS, tmp_path / "clusters")
    shutil.copy(REPO_ROOT / "gitopsctl.yaml", tmp_path / "gitopsctl.yaml")
    (tmp_path / ".git").mkdir()
    path = tmp_path / "clusters/homelab/image-automation/automation.yaml"
    before = path.read_text()
    found = automation.find(tmp_path / "clusters", "homelab", "flux-system")
    suspended = automation.suspended_text(before, found, True)
    path.write_text(suspended)
    changed = [(a, b) for a, b in zip(before.splitlines(), suspended.splitlines()) if a != b]
    assert changed == [("  suspend: false", "  suspend: true")]
    assert runner.run(tmp_path, [], tmp_path / "gitopsctl.yaml", environ={}).findings == []
    again = automation.find(tmp_path / "clusters", "homelab", "flux-system")
    assert again.suspended and automation.suspended_text(suspended, again, False) == before


def test_widening_the_automation_path_is_caught_by_check(tmp_path):
    """If someone points the automation at the markers, GOC010 names the field; since the
    config names the automation (rollback suspends it), it is a warning, not an error."""
    shutil.copytree(CLUSTERS, tmp_path / "clusters")
    shutil.copy(REPO_ROOT / "gitopsctl.yaml", tmp_path / "gitopsctl.yaml")
    (tmp_path / ".git").mkdir()
    path = tmp_path / "clusters/homelab/image-automation/automation.yaml"
    path.write_text(path.read_text().replace("path: ./clusters/homelab/infrastructure",
                                             "path: ./clusters/homelab"))
    found = [f for f in runner.run(tmp_path, [], tmp_path / "gitopsctl.yaml", environ={}).findings
             if f.rule == "GOC010"]
    assert sorted((f.location.path, f.severity) for f in found) == [
        ("clusters/homelab/apps/frontend/deployment.yaml", "warning"),
        ("clusters/homelab/backend-vm/docker-compose.yml", "warning")]
