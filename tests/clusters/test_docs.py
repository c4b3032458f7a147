"""The set-up guide and the docs index point at files, sections and objects that exist."""

from __future__ import annotations

import re

import pytest

from tests.clusters.conftest import HOMELAB, REPO_ROOT, flux_applied_objects

DOCS = REPO_ROOT / "docs"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """The anchor Gitea and GitHub give a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {_slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, flags=re.M)}


@pytest.mark.parametrize("page", ["README.md", "adopting.md", "bump-and-check.md", "homelab-setup.md", "kubernetes-target.md", "vm-setup.md"])
def test_relative_links_resolve(page):
    source = DOCS / page
    links = LINK.findall(source.read_text())
    assert links
    for link in links:
        if "://" in link:
            continue
        target, _, anchor = link.partition("#")
        path = (source.parent / target).resolve() if target else source
        assert path.exists(), f"{page}: {link}"
        if anchor:
            assert anchor in _anchors(path), f"{page}: {link}"


def test_index_lists_every_page():
    index = (DOCS / "README.md").read_text()
    for page in sorted(DOCS.glob("*.md")):
        if page.name != "README.md":
            assert f"]({page.name}" in index, page.name


def test_setup_guide_names_what_the_repository_holds():
    guide = (DOCS / "homelab-setup.md").read_text()
    for rel in ("flux-system/gotk-components.yaml", "infrastructure/controllers/sealed-secrets.yaml",
                "infrastructure/controllers/ci-access.yaml", "image-automation/automation.yaml",
                "backend-vm/backend-secrets.sealed.yaml", "routing/backend/endpointslice.yaml"):
        assert (HOMELAB / rel).is_file(), rel
        assert rel in guide, rel
    names = {o["metadata"]["name"] for o in flux_applied_objects()}
    for name in ("gitopsctl-ci", "harbor-credentials", "harbor-pull", "infrastructure-secrets", "apps",
                 "routing", "backend-vm"):
        assert name in names and f"`{name}`" in guide, name
    assert "--feature-gates=CancelHealthCheckOnNewRevision=true" in (
        HOMELAB / "flux-system/kustomization.yaml").read_text()
    assert "CancelHealthCheckOnNewRevision=true" in guide
