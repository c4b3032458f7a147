"""gitopsctl seal: Secret manifest in, kubeseal-compatible SealedSecret YAML out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Optional

from gitopsctl.sealed.inputs import read_input_file, read_manifest


@dataclass
class SealResult:
    manifest: dict
    text: str
    exit_code: int = 0

    def to_dict(self) -> dict:
        return {"sealedSecret": self.manifest}

    def render_text(self, console: Any) -> None:
        # Raw write: the YAML must reach stdout byte for byte, without rich markup or wrapping.
        console.file.write(self.text)
        console.file.flush()


def seal(ctx, *, cert: Path, scope: str = "strict", file: Optional[Path] = None,
         stdin: Optional[BinaryIO] = None) -> SealResult:
    from gitopsctl import sealed

    public_key = sealed.load_public_key(read_input_file(cert, "certificate"), source=str(cert))
    source, text = read_manifest(file, stdin)
    secret = sealed.parse_manifest(text, source=source, kind=sealed.SECRET_KIND)
    manifest = sealed.seal_secret(secret, public_key, scope, source=source)
    meta = manifest["metadata"]
    where = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]
    ctx.reporter.success(f"sealed {len(manifest['spec']['encryptedData'])} value(s) of {where} "
                         f"(scope {sealed.scope_of(meta)})")
    return SealResult(manifest=manifest, text=sealed.dump_manifest(manifest))
