"""A real kubeseal / controller vector: values sealed by the sealed-secrets toolchain for a
controller-generated 4096-bit key (provenance in tests/sealed/vectors/*.yaml)."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pytest

from gitopsctl import sealed
from gitopsctl.errors import InputError

VECTORS = Path(__file__).parent / "vectors"
# The plaintexts, as the kseal README prints them after decrypting these values.
EXPECTED = {
    "api_secret": b"my-dev-api-secret",
    "db_password": b"my-password-for-dev-db",
    "prd_db_password": b"my-password-for-prd-db",
    "secretMessage": b"This is a secret message",
}


@pytest.fixture(scope="module")
def controller_keys():
    return sealed.load_private_keys((VECTORS / "kseal-example-key.yaml").read_bytes(),
                                    source="kseal-example-key.yaml")


@pytest.fixture()
def vector():
    text = (VECTORS / "kseal-example-sealed.yaml").read_text()
    return sealed.parse_manifest(text, source="kseal-example-sealed.yaml", kind="SealedSecret")


def test_kubeseal_values_unseal_with_the_controller_key(controller_keys, vector):
    assert controller_keys[0].key_size == 4096
    assert sealed.decrypted_items(vector, controller_keys) == EXPECTED
    secret = sealed.unseal_secret(vector, controller_keys)
    assert secret["metadata"]["namespace"] == "my-namespace"
    assert secret["data"]["db_password"] == "bXktcGFzc3dvcmQtZm9yLWRldi1kYg=="


def test_kubeseal_values_are_bound_to_name_and_namespace(controller_keys, vector):
    vector["metadata"]["namespace"] = "other"
    with pytest.raises(InputError, match="sealed for my-namespace/my-secret"):
        sealed.decrypted_items(vector, controller_keys)


def test_controller_certificate_seals_values_its_key_opens(controller_keys):
    """The controller's own certificate (tls.crt of the backup) as `--cert`."""
    doc = sealed.parse_manifest((VECTORS / "kseal-example-key.yaml").read_text())
    cert = base64.b64decode(doc["data"]["tls.crt"])
    # Pinned clock: the certificate is valid 2021-01-25 .. 2031-01-23.
    public = sealed.load_public_key(cert, source="tls.crt",
                                    now=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    assert public.public_numbers() == controller_keys[0].public_key().public_numbers()
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "my-secret", "namespace": "my-namespace"},
              "stringData": {"x": "y"}}
    assert sealed.decrypted_items(sealed.seal_secret(secret, public), controller_keys) == {"x": b"y"}
