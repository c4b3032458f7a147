"""The VM side of `gitopsctl sync`: what runs on the VM, apart from the command's options.

  (here)     which VM target a run serves, where its status is recorded
  converge   one sync (or one read-only check) of one VM target, and its result
  checkout   moving the VM's clone along the branch, never back, never over local edits
  envfile    SealedSecrets unsealed into the env file compose reads
  lock       one sync per checkout at a time

docker compose itself is gitopsctl.compose (argv builders, container looks) and the
verdict on each service is gitopsctl.composehealth; the systemd units, gitopsctl.systemd.
"""

from __future__ import annotations

from typing import Any

from gitopsctl.errors import ConfigError, UsageError

STATUS_FILE = "sync-status.json"


def vm_target(config: Any, name: str | None) -> tuple[str, Any]:
    """(name, settings) of the VM target `name`, or of the only one when `name` is None.

    UsageError (exit 2) naming the VM targets when `name` is not one, or when there are
    several and none was named."""
    vms = config.targets_of_kind("vm")
    if name is not None:
        if name not in vms:
            what = "a Kubernetes target" if name in config.targets else "not a target"
            raise UsageError(f"--target {name}: {what} in {config.path}; sync serves a VM target",
                             hint=f"VM targets: {', '.join(vms) or '(none)'}")
        return name, vms[name]
    if not vms:
        raise ConfigError(f"{config.path}: no VM target is configured",
                          hint="sync runs on a VM and needs a target with `kind: vm`")
    if len(vms) > 1:
        raise UsageError(f"{config.path} has {len(vms)} VM targets; say which one this VM runs",
                         hint=f"pass --target NAME, one of: {', '.join(vms)}")
    return next(iter(vms.items()))


def status_name(config: Any, name: str) -> str:
    """sync-status.json; per target once there are several (one target keeps the old name)."""
    return STATUS_FILE if len(config.targets_of_kind("vm")) <= 1 else f"sync-status-{name}.json"
