"""The VM's systemd units (a sync .service and its .timer), rendered from the config.

The templates ship in gitopsctl/data/systemd/; the timer period is the target's
sync_interval and the run's deadline follows timeouts.failure. A config with one VM target
keeps the names gitopsctl-sync.service/.timer (installs made before there could be several
stay as they are); with several, each target's units carry its name and pass --target.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from importlib import resources
from pathlib import Path
from string import Template

from gitopsctl.errors import ConfigError, UsageError
from gitopsctl.fsutil import write_atomic

UNIT_NAMES = ("gitopsctl-sync.service", "gitopsctl-sync.timer")
# systemd splits ExecStart on whitespace and expands % and $; keep paths plain.
_PLAIN_PATH = re.compile(r"^/[\w./+-]*$")


def default_executable(remote_command: str) -> str:
    """An absolute path for ExecStart: the configured command, resolved on this machine."""
    if remote_command.startswith("/"):
        return remote_command
    found = shutil.which(remote_command)
    if found:
        return os.path.abspath(found)
    beside = Path(sys.executable).parent / remote_command
    if beside.is_file():
        return str(beside)
    raise UsageError(f"cannot find {remote_command!r} on PATH to put in ExecStart",
                     hint="set the VM target's remote_command to the absolute path of gitopsctl on the VM")


def unit_names(config, target: str) -> tuple[str, str]:
    """(service, timer) unit names of a VM target."""
    if len(config.targets_of_kind("vm")) <= 1:
        return UNIT_NAMES
    return (f"gitopsctl-sync-{target}.service", f"gitopsctl-sync-{target}.timer")


def render_units(config, target: str | None = None, *,
                 executable: str | None = None) -> dict[str, str]:
    """Unit file name -> text for the VM target `target` (None: the only one)."""
    from gitopsctl.agent import vm_target

    target, vm = vm_target(config, target)
    exe = executable or default_executable(vm.remote_command)
    for what, value in (("executable", exe), (f"targets.{target}.checkout", vm.checkout)):
        if not _PLAIN_PATH.match(value):
            raise ConfigError(f"{what}: {value!r} cannot go into a systemd unit as is",
                              hint="use an absolute path of letters, digits and . _ + - /")
    interval = max(10, int(round(vm.sync_interval)))
    wait = max(1, int(round(config.timeouts.failure)))
    service_unit, timer_unit = unit_names(config, target)
    several = service_unit != UNIT_NAMES[0]
    values = {
        "target": target,
        "what": f"VM target {target}",
        # one target: the same ExecStart as before there could be several
        "target_args": f" --target {target}" if several else "",
        "service_unit": service_unit,
        "user": vm.user,
        "checkout": vm.checkout,
        "executable": exe,
        "wait_timeout": str(wait),
        # lock wait and health sampling share the deadline; git and pull get a margin
        "start_timeout": f"{wait * 2 + 120}s",
        "interval": f"{interval}s",
        "jitter": f"{max(1, min(30, interval // 10))}s",
    }
    out = {}
    for template_name, name in zip(UNIT_NAMES, (service_unit, timer_unit)):
        template = resources.files("gitopsctl").joinpath("data", "systemd", template_name).read_text()
        out[name] = Template(template).substitute(values)
    return out


def write_units(units: dict[str, str], directory: Path) -> list[Path]:
    """Write each unit atomically (temp + rename), mode 0644."""

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in units.items():
        write_atomic(directory / name, text, 0o644)
        written.append(directory / name)
    return written
