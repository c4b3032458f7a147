"""gitopsctl unseal: SealedSecret in, the Secret the controller would create out.

The VM runs this (through gitopsctl.sealed, from `sync`) with a key pair of its own.
The Secret is printed only after every value decrypted, so a failure prints nothing.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Optional

from gitopsctl.sealed.inputs import read_input_file, read_manifest


@dataclass
class UnsealResult:
    manifest: dict
    text: str
    exit_code: int = 0

    def to_dict(self) -> dict:
        return {"secret": self.manifest}

    def render_text(self, console: Any) -> None:
        console.file.write(self.text)
        console.file.flush()


def unseal(ctx, *, key: Path, file: Optional[Path] = None,
           stdin: Optional[BinaryIO] = None) -> UnsealResult:
    from gitopsctl import sealed

    keys = sealed.load_private_keys(read_input_file(key, "private key"), source=str(key))
    _warn_if_exposed(ctx, key)
    source, text = read_manifest(file, stdin)
    doc = sealed.parse_manifest(text, source=source, kind=sealed.KIND)
    secret = sealed.unseal_secret(doc, keys, source=source)
    meta = secret["metadata"]
    where = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]
    ctx.reporter.success(f"unsealed {len(secret['data'])} value(s) of {where}")
    return UnsealResult(manifest=secret, text=sealed.dump_manifest(secret))


def _warn_if_exposed(ctx, key: Path) -> None:
    try:
        mode = os.stat(key).st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        ctx.reporter.warning(f"{key} is readable by other users; `chmod 600 {key}`")
