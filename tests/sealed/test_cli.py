"""`gitopsctl seal` / `gitopsctl unseal` as a user runs them: a real subprocess."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

from gitopsctl import sealed

SECRET = """\
apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: backend
stringData:
  password: correct horse battery staple
"""
PLAINTEXT = "correct horse battery staple"


def run(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITOPSCTL_")}
    env["NO_COLOR"] = "1"
    return subprocess.run([sys.executable, "-m", "gitopsctl", *args], input=stdin, cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=60)


def test_seal_then_unseal_round_trip(tmp_path, key_files):
    cert, key = key_files
    (tmp_path / "secret.yaml").write_text(SECRET)
    sealed_run = run("seal", "--cert", str(cert), "--scope", "namespace-wide",
                     "-f", str(tmp_path / "secret.yaml"), cwd=tmp_path)
    assert sealed_run.returncode == 0, sealed_run.stderr
    assert PLAINTEXT not in sealed_run.stdout + sealed_run.stderr
    assert sealed_run.stdout.startswith("apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\n")
    assert "sealed 1 value(s) of backend/db (scope namespace-wide)" in sealed_run.stderr
    doc = sealed.parse_manifest(sealed_run.stdout)
    assert doc["metadata"]["annotations"] == {"sealedsecrets.bitnami.com/namespace-wide": "true"}

    unsealed_run = run("unseal", "--key", str(key), stdin=sealed_run.stdout, cwd=tmp_path)
    assert unsealed_run.returncode == 0, unsealed_run.stderr
    secret = sealed.parse_manifest(unsealed_run.stdout, kind="Secret")
    assert base64.b64decode(secret["data"]["password"]).decode() == PLAINTEXT
    assert "readable by other users" not in unsealed_run.stderr


def test_json_output_is_one_document(tmp_path, key_files):
    cert, _ = key_files
    result = run("-o", "json", "seal", "--cert", str(cert), stdin=SECRET, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["sealedSecret"]["kind"] == "SealedSecret"


def test_unseal_with_wrong_key_prints_nothing_and_exits_2(tmp_path, key_files, other_key):
    cert, _ = key_files
    sealed_text = run("seal", "--cert", str(cert), stdin=SECRET, cwd=tmp_path).stdout
    wrong = tmp_path / "wrong.pem"
    wrong.write_bytes(other_key.private_pem())
    wrong.chmod(0o644)
    (tmp_path / "sealed.yaml").write_text(sealed_text)
    result = run("unseal", "--key", str(wrong), "-f", str(tmp_path / "sealed.yaml"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "cannot unseal password" in result.stderr and "hint:" in result.stderr
    assert "sealed.yaml:" in result.stderr  # file:line of the failing value
    assert "readable by other users" in result.stderr  # the 0644 key is called out
    assert "Traceback" not in result.stderr


def test_tampered_and_rescoped_inputs_fail_without_output(tmp_path, key_files):
    cert, key = key_files
    sealed_text = run("seal", "--cert", str(cert), stdin=SECRET, cwd=tmp_path).stdout
    rescoped = sealed_text.replace(
        "  creationTimestamp: null\n  name: db\n",
        "  annotations:\n    sealedsecrets.bitnami.com/cluster-wide: \"true\"\n"
        "  creationTimestamp: null\n  name: db\n", 1)
    assert rescoped != sealed_text
    result = run("unseal", "--key", str(key), stdin=rescoped, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert "sealed with scope strict but the manifest declares cluster-wide" in result.stderr

    doc = sealed.parse_manifest(sealed_text)
    value = doc["spec"]["encryptedData"]["password"]
    tampered = sealed_text.replace(value, value[:-8] + ("A" if value[-8] != "A" else "B") + value[-7:])
    result = run("unseal", "--key", str(key), stdin=tampered, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert "modified" in result.stderr


def test_seal_input_errors(tmp_path, key_files, key):
    cert, private = key_files
    cases = [
        (["--cert", str(tmp_path / "missing.pem")], SECRET, "certificate file not found"),
        (["--cert", str(private)], SECRET, "no PEM certificate or public key found"),
        (["--cert", str(cert)], SECRET.replace("kind: Secret", "kind: ConfigMap"),
         "expected kind Secret"),
        (["--cert", str(cert)], SECRET + "---\n" + SECRET, "2 YAML documents"),
        (["--cert", str(cert), "--scope", "strict"], SECRET.replace("  namespace: backend\n", ""),
         "metadata.namespace is missing"),
    ]
    for args, stdin, message in cases:
        result = run("seal", *args, stdin=stdin, cwd=tmp_path)
        assert result.returncode == 2, (message, result.stderr)
        assert result.stdout == ""
        assert message in result.stderr
        assert PLAINTEXT not in result.stderr


def test_bad_scope_is_a_usage_error(tmp_path, key_files):
    cert, _ = key_files
    result = run("seal", "--cert", str(cert), "--scope", "galaxy", stdin=SECRET, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""


TRICKY = ["yes", "no", "on", "off", "y", "n", "true", "null", "~", "0o17", "017", "0x1F", "1e3",
          "+1", ".5", "-.inf", ".NaN", "2026-01-01", "12:30", "=", "<<", "a: b", "#x", "- x",
          " lead", "trail ", "", "two words", "ünïcode", "tab\there", "line\nbreak", "'q'", '"q"']


def test_kustomize_reads_our_yaml_back_unchanged(tmp_path, key):
    """Go's YAML reader (kubectl kustomize) must see every string as the same string."""
    labels = {f"l{i}": v for i, v in enumerate(TRICKY) if "\n" not in v and "\t" not in v}
    annotations = {f"example.com/a{i}": v for i, v in enumerate(TRICKY)}
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "db", "namespace": "backend", "labels": labels,
                           "annotations": annotations},
              "stringData": {"password": "x"}}
    (tmp_path / "sealed.yaml").write_text(sealed.dump_manifest(sealed.seal_secret(secret, key.public)))
    (tmp_path / "kustomization.yaml").write_text("resources:\n- sealed.yaml\n")
    kubectl = Path(sys.executable).parent / "kubectl"
    result = subprocess.run([str(kubectl), "kustomize", str(tmp_path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    template_meta = sealed.parse_manifest(result.stdout)["spec"]["template"]["metadata"]

    def strings(mapping):  # kustomize writes "=" and "<<" unquoted; ruamel tags them on reading
        return {k: str(getattr(v, "value", v)) for k, v in mapping.items()}

    assert strings(template_meta["labels"]) == labels
    assert strings(template_meta["annotations"]) == annotations
