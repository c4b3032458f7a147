"""The example SealedSecrets committed under clusters/homelab, and how they were made.

Each example is sealed for a THROWAWAY key: the key pair is generated, used once and
dropped, so nobody (us included) can decrypt the committed files. They show the
shape a real homelab commits; docs/homelab-setup.md says how to re-seal them with
the cluster controller's certificate (`kubeseal --fetch-cert`) or the VM's.

    python -m tests.clusters.sealed_examples      # regenerate them (new throwaway key)

The tests seal the same Secrets with a key they generate, unseal them, and compare
the result's shape with the committed files.
"""

from __future__ import annotations

import base64
import json
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parents[2]
THROWAWAY_KEY_BITS = 4096  # what the sealed-secrets controller generates


def _dockerconfig(user: str) -> Callable[[], dict[str, str]]:
    def values() -> dict[str, str]:
        password = secrets.token_urlsafe(24)
        auth = base64.b64encode(f"{user}:{password}".encode()).decode()
        doc = {"auths": {"harbor.lan": {"username": user, "password": password, "auth": auth}}}
        return {".dockerconfigjson": json.dumps(doc, separators=(",", ":"))}
    return values


@dataclass(frozen=True)
class Example:
    path: str          # repo-relative
    name: str
    namespace: str
    type: str
    keys: tuple[str, ...]
    values: Callable[[], dict[str, str]]
    header: str        # comment lines written above the manifest

    def secret(self) -> dict[str, Any]:
        values = self.values()
        assert tuple(sorted(values)) == tuple(sorted(self.keys))
        return {"apiVersion": "v1", "kind": "Secret", "type": self.type,
                "metadata": {"name": self.name, "namespace": self.namespace},
                "stringData": values}


_CLUSTER_HEADER = """\
# EXAMPLE, sealed for a throwaway key: no controller can decrypt it. Re-seal it
# for your cluster's controller (docs/homelab-setup.md, step 3):
#   kubeseal --fetch-cert > cluster-cert.pem
#   gitopsctl seal --cert cluster-cert.pem -f secret.yaml > {file}
# {purpose}
"""

EXAMPLES: tuple[Example, ...] = (
    Example(
        path="clusters/homelab/backend-vm/backend-secrets.sealed.yaml",
        name="backend-secrets", namespace="backend", type="Opaque", keys=("API_TOKEN",),
        values=lambda: {"API_TOKEN": secrets.token_urlsafe(24)},
        header="""\
# EXAMPLE, sealed for a throwaway key: the VM cannot decrypt it. Re-seal it for
# YOUR VM's key (docs/vm-setup.md, step 4; docs/homelab-setup.md, step 6):
#   gitopsctl seal --cert clusters/homelab/backend-vm/sealing-cert.pem \\
#       -f secret.yaml > clusters/homelab/backend-vm/backend-secrets.sealed.yaml
# `gitopsctl sync` unseals it on the VM into targets.vm.env_file, which the
# compose file reads. Never applied to the cluster (not in any kustomization).
"""),
    Example(
        path="clusters/homelab/infrastructure/secrets/harbor-credentials.sealed.yaml",
        name="harbor-credentials", namespace="flux-system",
        type="kubernetes.io/dockerconfigjson", keys=(".dockerconfigjson",),
        values=_dockerconfig("robot$homelab+flux"),
        header=_CLUSTER_HEADER.format(
            file="clusters/homelab/infrastructure/secrets/harbor-credentials.sealed.yaml",
            purpose="Harbor robot account (pull) the ImageRepositories scan with.")),
    Example(
        path="clusters/homelab/infrastructure/secrets/harbor-pull.sealed.yaml",
        name="harbor-pull", namespace="default",
        type="kubernetes.io/dockerconfigjson", keys=(".dockerconfigjson",),
        values=_dockerconfig("robot$homelab+flux"),
        header=_CLUSTER_HEADER.format(
            file="clusters/homelab/infrastructure/secrets/harbor-pull.sealed.yaml",
            purpose="Harbor robot account (pull) the frontend's pods pull with "
                    "(imagePullSecrets).")),
)


def generate_key(bits: int = THROWAWAY_KEY_BITS):
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def seal(example: Example, public_key) -> tuple[dict, dict[str, str]]:
    """(SealedSecret manifest, the plaintext values it holds)."""
    from gitopsctl import sealed

    secret = example.secret()
    return sealed.seal_secret(secret, public_key, scope="strict"), dict(secret["stringData"])


def render(example: Example, manifest: dict) -> str:
    from gitopsctl import sealed

    return example.header + sealed.dump_manifest(manifest)


def main() -> int:
    from gitopsctl.setters import write_atomic

    key = generate_key()
    for example in EXAMPLES:
        manifest, _ = seal(example, key.public_key())
        path = REPO_ROOT / example.path
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, render(example, manifest))
        print(f"wrote {example.path}")
    del key  # throwaway: never written anywhere
    return 0


if __name__ == "__main__":
    sys.exit(main())
