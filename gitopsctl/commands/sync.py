"""gitopsctl sync: runs ON the VM, from the systemd timer or from CI over SSH.

The options are checked here; the run itself is gitopsctl.agent.converge: lock -> git
fetch -> fast-forward -> unseal secrets -> docker compose pull + up --wait -> every
service of the VM target judged by its own checks -> status recorded and returned, per
service and overall. One run serves one VM target (`--target NAME`; without it, the
only VM target in the config). `--check` only looks; `--systemd-units DIR` writes the
target's timer units instead of syncing.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from gitopsctl.agent import vm_target
from gitopsctl.errors import UsageError

_SHA_RE = re.compile(r"^[0-9a-f]{7,64}$")


def sync(ctx, revision: str | None = None, wait_timeout: float | None = None,
         systemd_units: Path | None = None, check: bool = False, target: str | None = None,
         **_: Any) -> Any:
    from gitopsctl.agent import converge

    if check and (revision is not None or systemd_units is not None):
        raise UsageError("--check only looks: it takes no --revision or --systemd-units",
                         hint="run `gitopsctl sync --check` alone")
    if systemd_units is not None:
        return _install_units(ctx, Path(systemd_units), target)
    started = time.monotonic()
    if revision is not None and not _SHA_RE.match(revision):
        raise UsageError(f"--revision: not a commit SHA: {revision!r}",
                         hint="pass a lowercase hex commit id, e.g. the deploy commit CI pushed")
    cfg = ctx.config
    # A target the checkout's config does not have yet may come with the revision CI
    # asks for (a renamed or new target): it is confirmed there, before the checkout moves.
    later = not check and target is not None and target not in cfg.targets_of_kind("vm")
    name = target if later else vm_target(cfg, target)[0]
    checkout = Path(ctx.repo)
    if not (checkout / ".git").exists():
        raise UsageError(f"{checkout} is not a git checkout",
                         hint="pass --repo with the VM's clone of the homelab repository "
                              f"(targets.{name}.checkout)")
    wait = float(wait_timeout) if wait_timeout else cfg.timeouts.failure
    if wait <= 0:
        raise UsageError("--wait-timeout must be positive")
    deadline = started + wait
    if check:
        return converge.check(ctx, name, checkout, deadline, started)
    return converge.run(ctx, name, checkout, revision=revision, deadline=deadline, started=started,
                        confirm_target=later)


def _install_units(ctx, directory: Path, target: str | None):
    from gitopsctl import systemd
    from gitopsctl.commands import Message

    name, vm = vm_target(ctx.config, target)
    written = systemd.write_units(systemd.render_units(ctx.config, name), directory)
    names = ", ".join(p.name for p in written)
    timer = next(p.name for p in written if p.name.endswith(".timer"))
    return Message(f"wrote {names} to {directory}; then: systemctl daemon-reload && "
                   f"systemctl enable --now {timer}",
                   data={"target": name, "units": [str(p) for p in written],
                         "interval_seconds": vm.sync_interval})
