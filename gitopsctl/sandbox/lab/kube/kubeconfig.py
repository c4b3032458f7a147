"""Write a kubeconfig that points the real client (and kubectl) at the emulator."""

from __future__ import annotations

import base64
import json
import os
import tempfile
from pathlib import Path

CONTEXT = "gitopsctl-emulator"


def kubeconfig_document(server: str, token: str, ca_pem: bytes | None,
                        context: str = CONTEXT, namespace: str = "default") -> dict:
    cluster: dict = {"server": server}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": cluster}],
        "users": [{"name": context, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context,
                                                   "namespace": namespace}}],
        "current-context": context,
    }


def write_kubeconfig(path: Path, document: dict) -> Path:
    """Atomically write `document` (JSON is valid YAML) readable by its owner only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".kubeconfig-")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(document, fh, indent=2)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
