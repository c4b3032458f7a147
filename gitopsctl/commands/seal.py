"""gitopsctl seal: Secret manifest in, kubeseal-compatible SealedSecret YAML out."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Optional

from gitopsctl.errors import InputError, Location


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


def read_input_file(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{what} file not found", hint="check the path",
                         location=Location(str(path))) from None
    except IsADirectoryError:
        raise InputError(f"{what} path is a directory", location=Location(str(path))) from None
    except PermissionError:
        raise InputError(f"cannot read the {what} file: permission denied",
                         hint="run as a user that can read it", location=Location(str(path))) from None


def read_manifest(file: Optional[Path], stdin: Optional[BinaryIO] = None) -> tuple[str, str]:
    """(source name, text) from -f FILE, or from stdin when no file is given."""
    if file is not None and str(file) != "-":
        source, data = str(file), read_input_file(file, "manifest")
    else:
        stream = stdin if stdin is not None else sys.stdin.buffer
        if stdin is None and sys.stdin.isatty():
            raise InputError("no manifest given", hint="pass -f FILE or pipe the manifest on stdin")
        source, data = "<stdin>", stream.read()
    try:
        return source, data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"the manifest is not UTF-8 text (byte {exc.start})",
                         hint="Kubernetes manifests are UTF-8 YAML or JSON",
                         location=Location(source)) from None
