"""Where seal and unseal read their input: a file, or standard input."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import BinaryIO, Optional

from gitopsctl.errors import InputError, Location


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
