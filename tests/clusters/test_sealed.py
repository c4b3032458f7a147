"""The example SealedSecrets: shaped as `gitopsctl seal` makes them, and unsealable by the right key only.

The committed files were sealed for a throwaway key nobody holds (sealed_examples.py).
Here the same Secrets are sealed with a key the test generates, unsealed with it, and
their shape compared with what is committed.
"""

from __future__ import annotations

import base64
import copy

import pytest

from gitopsctl import sealed
from gitopsctl.errors import InputError
from tests.clusters.conftest import HOMELAB, REPO_ROOT, built, by_kind, flux_applied_objects
from tests.clusters.sealed_examples import EXAMPLES, THROWAWAY_KEY_BITS, generate_key, render, seal


@pytest.fixture(scope="module")
def test_key():
    return generate_key(2048)  # the minimum the sealing code accepts; fast to make


def _committed(example) -> dict:
    path = REPO_ROOT / example.path
    return sealed.parse_manifest(path.read_text(), source=example.path, kind="SealedSecret")


def _without_ciphertext(manifest: dict) -> dict:
    shape = copy.deepcopy(manifest)
    shape["spec"]["encryptedData"] = sorted(shape["spec"]["encryptedData"])
    return shape


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_committed_example_has_the_shape_seal_produces(example, test_key):
    committed = _committed(example)
    fresh, _ = seal(example, test_key.public_key())
    assert _without_ciphertext(sealed.parse_manifest(render(example, fresh))) == _without_ciphertext(committed)
    assert committed["metadata"]["name"] == example.name
    assert committed["metadata"]["namespace"] == example.namespace
    assert committed["spec"]["template"]["type"] == example.type
    assert sealed.scope_of(committed["metadata"]) == sealed.STRICT
    for key, value in committed["spec"]["encryptedData"].items():
        blob = base64.b64decode(value, validate=True)
        # kubeseal's layout: 2-byte length of the RSA-wrapped session key, the key, then AES-GCM data
        wrapped = int.from_bytes(blob[:2], "big")
        assert wrapped == THROWAWAY_KEY_BITS // 8, key
        assert len(blob) > 2 + wrapped + 16, key


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_example_unseals_with_its_key_and_only_with_it(example, test_key):
    manifest, values = seal(example, test_key.public_key())
    text = render(example, manifest)
    items = sealed.decrypted_items(sealed.parse_manifest(text), test_key)
    assert {k: v.decode() if isinstance(v, bytes) else v for k, v in items.items()} == values
    secret = sealed.unseal_secret(sealed.parse_manifest(text), test_key)
    assert secret["type"] == example.type
    assert (secret["metadata"]["namespace"], secret["metadata"]["name"]) == (example.namespace, example.name)
    # the committed one was sealed for a key nobody has, certainly not this one
    with pytest.raises(InputError) as raised:
        sealed.decrypted_items(_committed(example), test_key)
    for value in values.values():
        assert value not in str(raised.value) and value not in str(raised.value.hint)
    # moved to another name, the ciphertext no longer opens (strict scope)
    moved = sealed.parse_manifest(text)
    moved["metadata"]["name"] = moved["spec"]["template"]["metadata"]["name"] = example.name + "-copy"
    with pytest.raises(InputError):
        sealed.decrypted_items(moved, test_key)


def test_backend_secret_is_the_one_sync_unseals_and_the_cluster_never_sees(homelab_config):
    backend = next(e for e in EXAMPLES if e.name == "backend-secrets")
    assert homelab_config.target_of("backend").sealed_secrets == (backend.path,)
    assert not [o for o in flux_applied_objects() if o["kind"] == "SealedSecret"
                and o["metadata"]["name"] == backend.name]


def test_cluster_examples_are_applied_by_flux():
    applied = by_kind(built(HOMELAB / "infrastructure/secrets"), "SealedSecret", "bitnami.com/v1alpha1")
    cluster = {(e.namespace, e.name) for e in EXAMPLES if "infrastructure/secrets" in e.path}
    assert set(applied) == cluster


def test_examples_say_they_are_examples():
    for example in EXAMPLES:
        head = (REPO_ROOT / example.path).read_text().splitlines()[0]
        assert head.startswith("# EXAMPLE, sealed for a throwaway key"), example.path
