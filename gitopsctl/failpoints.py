"""Named pause points for crash-safety tests: `GITOPSCTL_FAILPOINTS=before-push,...`.

A test sets the variable, waits for the marker file to appear and kills the process
there, which is how it proves a kill at that exact step leaves git consistent. Unset
(always, in production), `reached` is one dictionary lookup.
"""

from __future__ import annotations

import os
import time

_PAUSE_SECONDS = 300.0  # bounded: a forgotten failpoint cannot hold a pipeline forever


def reached(name: str) -> None:
    wanted = os.environ.get("GITOPSCTL_FAILPOINTS")
    if not wanted or name not in wanted.split(","):
        return
    marker = os.environ.get("GITOPSCTL_FAILPOINT_FILE")
    if marker:
        with open(marker, "a", encoding="utf-8") as out:
            out.write(name + "\n")
    time.sleep(_PAUSE_SECONDS)
