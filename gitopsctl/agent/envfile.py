"""SealedSecrets unsealed with the VM's own key into the env file compose reads."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from gitopsctl.agent.checkout import inside
from gitopsctl.errors import ConfigError, InputError
from gitopsctl.fsutil import write_atomic

_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def write_env_file(vm: Any, target: str, checkout: Path) -> tuple[Path | None, bool]:
    """Unseal every configured SealedSecret into KEY='value' lines; returns (path, changed)."""
    if not vm.sealed_secrets:
        return None, False
    from gitopsctl import sealed

    key_path = Path(vm.unseal_key)
    try:
        keys = sealed.load_private_keys(key_path.read_bytes(), source=str(key_path))
    except OSError as exc:
        raise ConfigError(f"cannot read the VM's sealing key {key_path}: {exc.strerror}",
                          hint=f"the VM has its own key pair, at targets.{target}.unseal_key "
                               "(docs/vm-setup.md in the gitopsctl repository)") from None
    values: dict[str, bytes] = {}
    origin: dict[str, str] = {}
    for rel in vm.sealed_secrets:
        path = inside(checkout, rel, f"targets.{target}.sealed_secrets")
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read sealed secret {rel}: {exc.strerror}",
                              hint=f"targets.{target}.sealed_secrets lists repo-relative files") from None
        doc = sealed.parse_manifest(text, source=rel, kind=sealed.KIND)
        for name, value in sealed.decrypted_items(doc, keys, source=rel).items():
            if name in values and values[name] != value:
                raise InputError(f"{rel}: key {name} is also set by {origin[name]} with another value",
                                 hint="one env variable, one sealed secret")
            values[name], origin[name] = value, rel
    lines = []
    for name in sorted(values):
        lines.append(env_line(name, values[name], origin[name]))
    content = "".join(lines).encode("utf-8")
    env_path = inside(checkout, vm.env_file, f"targets.{target}.env_file")
    try:
        changed = env_path.read_bytes() != content
    except OSError:
        changed = True
    if changed:
        env_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(env_path, content, 0o600)
    return env_path, changed


def env_line(name: str, value: bytes, source: str) -> str:
    """KEY='value': single quotes make compose read the value literally (no $ expansion).

    Errors name the key and the file, never the value.
    """
    if not _ENV_KEY_RE.match(name):
        raise InputError(f"{source}: secret key {name!r} is not a valid environment variable name",
                         hint="use letters, digits and _ and do not start with a digit")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{source}: the value of {name} is not UTF-8 text",
                         hint="an env file holds text; mount binary secrets as files instead") from None
    for bad, what in (("\n", "a newline"), ("\r", "a carriage return"), ("\x00", "a NUL byte"),
                      ("'", "a single quote")):
        if bad in text:
            raise InputError(f"{source}: the value of {name} contains {what}, which an env file "
                             "cannot carry literally",
                             hint="seal a value without it (e.g. base64-encode it and decode in "
                                  "the container)")
    return f"{name}='{text}'\n"
