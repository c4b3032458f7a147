"""seal_secret / unseal_secret / decrypted_items on manifests, and key loading."""

from __future__ import annotations

import base64
import copy
import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitopsctl import sealed
from gitopsctl.errors import InputError
from gitopsctl.sealed.yamlio import to_plain

from .conftest import self_signed_cert

SECRET_YAML = """\
apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: backend
  uid: 0a1b2c
  resourceVersion: "42"
  creationTimestamp: "2026-01-01T00:00:00Z"
  labels:
    app: backend
  annotations:
    owner: ops
    kubectl.kubernetes.io/last-applied-configuration: '{"data":{"password":"aHVudGVyMg=="}}'
  ownerReferences:
  - apiVersion: v1
    kind: Pod
    name: p
    uid: u
type: kubernetes.io/basic-auth
data:
  password: aHVudGVyMg==
  username: YWRtaW4=
stringData:
  username: root
  note: "two words"
"""


def secret(**overrides) -> dict:
    doc = {"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": "db", "namespace": "backend"},
           "stringData": {"password": "hunter2"}}
    doc.update(overrides)
    return doc


# --------------------------------------------------------------------------- seal shape

def test_sealed_manifest_has_kubeseal_shape(key):
    doc = sealed.parse_manifest(SECRET_YAML, source="secret.yaml")
    out = sealed.seal_secret(doc, key.public)
    assert out["apiVersion"] == "bitnami.com/v1alpha1" and out["kind"] == "SealedSecret"
    assert out["metadata"] == {"creationTimestamp": None, "name": "db", "namespace": "backend"}
    assert list(out["spec"]["encryptedData"]) == ["note", "password", "username"]
    template = out["spec"]["template"]
    assert template["type"] == "kubernetes.io/basic-auth"
    # Metadata travels in the template; server fields, owner refs and the plaintext copy
    # kubectl keeps in last-applied-configuration do not.
    assert template["metadata"] == {"annotations": {"owner": "ops"}, "creationTimestamp": None,
                                    "labels": {"app": "backend"}, "name": "db",
                                    "namespace": "backend"}
    assert "aHVudGVyMg" not in sealed.dump_manifest(out)


def test_string_data_wins_over_data_like_the_api_server(key):
    doc = sealed.parse_manifest(SECRET_YAML)
    items = sealed.decrypted_items(sealed.seal_secret(doc, key.public), key.private)
    assert items == {"note": b"two words", "password": b"hunter2", "username": b"root"}


@pytest.mark.parametrize("scope,annotation", [
    ("strict", None),
    ("namespace-wide", "sealedsecrets.bitnami.com/namespace-wide"),
    ("cluster-wide", "sealedsecrets.bitnami.com/cluster-wide")])
def test_scope_annotations_on_sealed_and_template(key, scope, annotation):
    out = sealed.seal_secret(secret(), key.public, scope)
    for meta in (out["metadata"], out["spec"]["template"]["metadata"]):
        expected = {annotation: "true"} if annotation else None
        assert meta.get("annotations") == expected
    assert sealed.scope_of(out["metadata"]) == scope
    label = sealed.encryption_label("backend", "db", scope)
    blob = base64.b64decode(out["spec"]["encryptedData"]["password"])
    assert sealed.hybrid_decrypt(key.private, blob, label) == b"hunter2"


def test_default_scope_keeps_scope_the_secret_declares(key):
    """kubeseal only overrides annotations for a non-default --scope."""
    doc = secret(metadata={"name": "db", "namespace": "backend",
                           "annotations": {"sealedsecrets.bitnami.com/namespace-wide": "true"}})
    out = sealed.seal_secret(doc, key.public)
    assert sealed.scope_of(out["metadata"]) == "namespace-wide"
    assert sealed.seal_secret(doc, key.public, "cluster-wide")["metadata"]["annotations"] == {
        "sealedsecrets.bitnami.com/cluster-wide": "true"}


def test_cluster_wide_needs_no_namespace(key):
    doc = secret(metadata={"name": "db"})
    out = sealed.seal_secret(doc, key.public, "cluster-wide")
    assert "namespace" not in out["metadata"]
    assert sealed.decrypted_items(out, key.private) == {"password": b"hunter2"}


def test_seal_does_not_mutate_its_input(key):
    doc = sealed.parse_manifest(SECRET_YAML)
    before = copy.deepcopy(to_plain(doc))
    sealed.seal_secret(doc, key.public, "cluster-wide")
    assert to_plain(doc) == before


def test_immutable_is_carried(key):
    out = sealed.seal_secret(secret(immutable=True), key.public)
    assert out["spec"]["template"]["immutable"] is True
    assert sealed.unseal_secret(out, key.private)["immutable"] is True


# --------------------------------------------------------------------------- round trips

values = st.dictionaries(st.from_regex(r"[-._a-zA-Z0-9]{1,30}", fullmatch=True).filter(
    lambda k: k not in (".", "..")), st.binary(max_size=300), min_size=1, max_size=5)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=values, scope=st.sampled_from(sealed.SCOPES), key_index=st.integers(0, 2))
def test_manifest_round_trip_through_yaml(keys, data, scope, key_index):
    pair = keys[key_index]
    doc = secret(stringData=None, data={k: base64.b64encode(v).decode() for k, v in data.items()})
    text = sealed.dump_manifest(sealed.seal_secret(doc, pair.public, scope))
    reparsed = sealed.parse_manifest(text, kind="SealedSecret")
    assert sealed.decrypted_items(reparsed, pair.private) == data
    unsealed = sealed.unseal_secret(reparsed, [keys[(key_index + 1) % 3].private, pair.private])
    assert unsealed["data"] == doc["data"]
    assert unsealed["metadata"]["name"] == "db" and unsealed["kind"] == "Secret"


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=40))
def test_dump_quotes_what_would_change_type(text):
    """Any string survives dump -> YAML load unchanged (as a string)."""
    doc = {"metadata": {"annotations": {"k": text}}}
    assert sealed.parse_manifest(sealed.dump_manifest(doc))["metadata"]["annotations"]["k"] == text


def test_dump_format_matches_kubeseal_style():
    text = sealed.dump_manifest({"b": {"on": "true", "k": None}, "a": "v1",
                                 "c": ["p", {"q": "1"}], "d": {}, "e": "two words"})
    assert text == ('a: v1\nb:\n  k: null\n  "on": "true"\nc:\n- p\n- q: "1"\nd: {}\n'
                    'e: two words\n')


# --------------------------------------------------------------------------- unseal errors

def sealed_doc(key, scope="strict", **kw) -> dict:
    return sealed.seal_secret(secret(**kw), key.public, scope)


def test_wrong_key_is_a_clear_input_error(key, other_key):
    with pytest.raises(InputError) as caught:
        sealed.unseal_secret(sealed_doc(key), other_key.private, source="s.yaml")
    err = caught.value
    assert "cannot unseal password" in err.message
    assert "sealed with the public key of this private key" in err.hint
    assert "hunter2" not in str(err.to_dict())


def test_tampered_value_says_modified(key):
    doc = sealed_doc(key)
    blob = bytearray(base64.b64decode(doc["spec"]["encryptedData"]["password"]))
    blob[-1] ^= 1
    doc["spec"]["encryptedData"]["password"] = base64.b64encode(bytes(blob)).decode()
    with pytest.raises(InputError, match="modified"):
        sealed.decrypted_items(doc, key.private)


@pytest.mark.parametrize("sealed_scope,declared", [
    ("strict", "cluster-wide"), ("cluster-wide", "strict"), ("namespace-wide", "cluster-wide"),
    ("strict", "namespace-wide")])
def test_changed_scope_annotation_is_diagnosed(key, sealed_scope, declared):
    doc = sealed_doc(key, sealed_scope)
    doc["metadata"]["annotations"] = sealed.with_scope_annotations({}, declared)
    with pytest.raises(InputError) as caught:
        sealed.decrypted_items(doc, key.private)
    assert f"sealed with scope {sealed_scope} but the manifest declares {declared}" \
        in caught.value.message


def test_renamed_sealed_secret_is_diagnosed(key):
    doc = sealed_doc(key)
    doc["metadata"]["name"] = "db-copy"
    with pytest.raises(InputError, match="sealed for backend/db but the manifest says backend/db-copy"):
        sealed.decrypted_items(doc, key.private)


def test_missing_namespace_for_strict_is_refused(key):
    doc = sealed_doc(key)
    del doc["metadata"]["namespace"]
    with pytest.raises(InputError, match="metadata.namespace is missing"):
        sealed.decrypted_items(doc, key.private)


def test_errors_carry_file_and_line(key):
    text = sealed.dump_manifest(sealed_doc(key, stringData={"a": "1", "b": "2"}))
    text = text.replace("    b: ", "    b: not*base64")
    doc = sealed.parse_manifest(text, source="sealed.yaml")
    with pytest.raises(InputError) as caught:
        sealed.decrypted_items(doc, key.private, source="sealed.yaml")
    line = next(i for i, l in enumerate(text.splitlines(), 1) if l.startswith("    b: "))
    assert str(caught.value.location) == f"sealed.yaml:{line}"
    assert "spec.encryptedData.b is not valid base64" in caught.value.message


def test_unsupported_formats_are_refused(key):
    doc = sealed_doc(key)
    doc["spec"]["template"]["data"] = {"url": "postgres://{{ .password }}@db"}
    with pytest.raises(InputError, match="template.data"):
        sealed.decrypted_items(doc, key.private)
    legacy = sealed_doc(key)
    legacy["spec"]["data"] = "AgBy"
    with pytest.raises(InputError, match="spec.data"):
        sealed.decrypted_items(legacy, key.private)


# --------------------------------------------------------------------------- seal errors

@pytest.mark.parametrize("doc,message", [
    (secret(kind="ConfigMap"), "expected kind Secret"),
    (secret(apiVersion="v2"), "expected apiVersion v1"),
    (secret(metadata={"namespace": "backend"}), "metadata.name is missing"),
    (secret(metadata={"name": "db"}), "metadata.namespace is missing"),
    (secret(metadata={"name": "DB", "namespace": "backend"}), "not a valid Kubernetes name"),
    (secret(stringData={}), "no data or stringData"),
    (secret(stringData={"bad key": "v"}), "not a valid Secret key"),
    (secret(stringData={"k": 5}), "stringData.k must be a string"),
    (secret(stringData=None, data={"k": "not base64!"}), "data.k is not valid base64"),
    (secret(metadata={"name": "db", "namespace": "b", "labels": {"port": 8080}}),
     "metadata.labels.port must be a string"),
])
def test_bad_secrets_are_input_errors(key, doc, message):
    with pytest.raises(InputError, match=message):
        sealed.seal_secret(doc, key.public)


def test_bad_scope_is_refused(key):
    with pytest.raises(InputError, match="unknown scope"):
        sealed.seal_secret(secret(), key.public, "everywhere")


def test_parse_refuses_multiple_documents_and_bad_yaml():
    with pytest.raises(InputError, match="2 YAML documents") as caught:
        sealed.parse_manifest("kind: Secret\n---\nkind: Secret\n", source="two.yaml")
    assert str(caught.value.location) == "two.yaml:3"
    with pytest.raises(InputError, match="not valid YAML") as caught:
        sealed.parse_manifest("kind: Secret\nmetadata: [\n", source="bad.yaml")
    assert caught.value.location.path == "bad.yaml" and caught.value.location.line
    with pytest.raises(InputError, match="expected kind SealedSecret"):
        sealed.parse_manifest("kind: Secret\n", kind="SealedSecret")
    with pytest.raises(InputError, match="empty"):
        sealed.parse_manifest("---\n")
    assert sealed.parse_manifest('{"kind": "Secret"}')["kind"] == "Secret"  # JSON too


# --------------------------------------------------------------------------- keys

def test_public_key_from_cert_spki_and_pkcs1(key):
    pkcs1 = key.public.public_bytes(serialization.Encoding.PEM,
                                    serialization.PublicFormat.PKCS1)
    for pem in (key.cert_pem(), key.public_pem(), pkcs1):
        assert sealed.load_public_key(pem).public_numbers() == key.public.public_numbers()


def test_expired_certificate_is_refused(key):
    old = key.cert_pem(days=1, not_before=dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc))
    with pytest.raises(InputError, match="expired on 2020-01-02") as caught:
        sealed.load_public_key(old, source="cert.pem")
    assert "kubeseal --fetch-cert" in caught.value.hint


def test_wrong_key_material_is_refused(key):
    with pytest.raises(InputError, match="no PEM certificate") as caught:
        sealed.load_public_key(key.private_pem())
    assert "private key" in caught.value.hint
    with pytest.raises(InputError, match="no PEM private key"):
        sealed.load_private_key(key.cert_pem())
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_pub = ec_key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(InputError, match="need RSA"):
        sealed.load_public_key(ec_pub)
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(InputError, match="1024 bits"):
        sealed.load_public_key(self_signed_cert(small))


def test_private_key_formats(key):
    for pem in (key.private_pem(), key.pkcs8_pem()):
        assert sealed.load_private_key(pem).private_numbers() == key.private.private_numbers()
    encrypted = key.private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pass"))
    with pytest.raises(InputError, match="encrypted with a passphrase"):
        sealed.load_private_key(encrypted)


def test_controller_key_backup_list(keys):
    items = "".join(
        f"- apiVersion: v1\n  kind: Secret\n  type: kubernetes.io/tls\n"
        f"  metadata: {{name: sealed-secrets-key{i}, namespace: kube-system}}\n"
        f"  data:\n    tls.key: {base64.b64encode(pair.private_pem()).decode()}\n"
        for i, pair in enumerate(keys[:2]))
    loaded = sealed.load_private_keys(f"apiVersion: v1\nkind: List\nitems:\n{items}".encode())
    assert [k.private_numbers() for k in loaded] == [p.private.private_numbers() for p in keys[:2]]
    # After key rotation the controller tries every key; so does unseal.
    doc = sealed_doc(keys[1])
    assert sealed.decrypted_items(doc, loaded) == {"password": b"hunter2"}


def test_yaml_errors_never_quote_values():
    text = "kind: Secret\nstringData:\n  password: hunter2\n  password: hunter3\n"
    with pytest.raises(InputError) as caught:
        sealed.parse_manifest(text, source="s.yaml")
    assert "hunter" not in str(caught.value.to_dict())
    assert str(caught.value.location) == "s.yaml:4"


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_parse_never_crashes(text):
    try:
        sealed.parse_manifest(text)
    except InputError:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10)
_VECTOR = sealed.parse_manifest(
    (Path(__file__).parent / "vectors" / "kseal-example-sealed.yaml").read_text())
_REAL_VALUES = [str(v) for v in _VECTOR["spec"]["encryptedData"].values()]
plausible_names = st.sampled_from(["my-secret", "my-namespace", "", "DB", "a/b"]) | json_values
annotation_maps = st.dictionaries(
    st.sampled_from([sealed.ANNOTATION_CLUSTER_WIDE, sealed.ANNOTATION_NAMESPACE_WIDE, "x"]),
    st.sampled_from(["true", "false"]) | json_values, max_size=2) | json_values
optional_meta = {"annotations": annotation_maps,
                 "labels": json_values | st.dictionaries(st.text(max_size=5), st.text(max_size=5))}
metadatas = (st.fixed_dictionaries({"name": st.just("my-secret"),
                                    "namespace": st.sampled_from(["my-namespace", "other"])},
                                   optional=optional_meta)
             | st.fixed_dictionaries({}, optional={"name": plausible_names,
                                                  "namespace": plausible_names, **optional_meta})
             | json_values)
value_maps_any = (st.dictionaries(st.sampled_from(["k", "a.b"]), st.text(max_size=8), min_size=1)
                  | st.dictionaries(st.sampled_from(["k", "bad key", ""]) | st.text(max_size=4),
                                    st.text(max_size=8) | json_values, max_size=3)
                  | json_values)
specs = st.fixed_dictionaries({
    "encryptedData": st.dictionaries(st.sampled_from(["k", "db_password", "bad key"]),
                                     st.sampled_from([*_REAL_VALUES, "AgAA", "", "!!"]) | json_values)
    | json_values}, optional={
    "template": st.fixed_dictionaries({}, optional={"metadata": metadatas, "type": json_values,
                                                    "data": json_values}) | json_values,
    "data": json_values}) | json_values


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(metadata=metadatas, data=value_maps_any, string_data=value_maps_any, type_=json_values,
       spec=specs, kind=st.sampled_from(["SealedSecret", "Secret"]),
       scope=st.sampled_from(sealed.SCOPES))
def test_arbitrary_structures_give_input_errors_not_crashes(keys, metadata, data, string_data,
                                                            type_, spec, kind, scope):
    key = keys[3]  # the controller key the real values in _REAL_VALUES were sealed for
    doc = {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "data": data,
           "stringData": string_data, "type": type_}
    try:
        out = sealed.seal_secret(doc, key.public, scope)
        sealed.parse_manifest(sealed.dump_manifest(out))
    except InputError:
        pass
    sealed_doc_ = {"apiVersion": sealed.API_VERSION, "kind": kind, "metadata": metadata,
                   "spec": spec}
    try:
        sealed.dump_manifest(sealed.unseal_secret(sealed_doc_, key.private))
    except InputError:
        pass
