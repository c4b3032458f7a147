"""Start-up time: `gitopsctl --help` against `kubectl --help`, measured side by side.

Both commands run alternately, so machine load affects them alike. Prints the median
and best wall time of each and the ratio of medians (goal: at most 2.0), with the
interpreter gitopsctl runs on and the load average, both of which move the figures.
`gitopsctl bump --help` runs alongside for reference: a subcommand's help also builds
that subcommand's options.

    python benchmarks/startup.py [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def find(tool: str) -> str:
    beside = Path(sys.executable).parent / tool
    if beside.exists():
        return str(beside)
    found = shutil.which(tool)
    if not found:
        sys.exit(f"{tool} not found next to {sys.executable} or on PATH; install the test extra")
    return found


def wall(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def interpreter(gitopsctl: str) -> str:
    """The Python the console script runs on: its version and the binary behind the venv."""
    shebang = Path(gitopsctl).read_text().splitlines()[0].removeprefix("#!").split()
    probe = "import sys; print(sys.version.split()[0], getattr(sys, '_base_executable', sys.executable))"
    return subprocess.run([*shebang, "-c", probe], capture_output=True, text=True,
                          check=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    gitopsctl = find("gitopsctl")
    commands = {"gitopsctl --help": [gitopsctl, "--help"],
                "kubectl --help": [find("kubectl"), "--help"],
                "gitopsctl bump --help": [gitopsctl, "bump", "--help"]}
    print(f"gitopsctl runs on Python {interpreter(gitopsctl)}")
    load_before = os.getloadavg()[0]
    for argv in commands.values():  # warm the page cache and bytecode
        wall(argv)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, argv in commands.items():
            samples[name].append(wall(argv))
    print(f"load average (1 min): {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    for name, values in samples.items():
        print(f"{name:22s} median {statistics.median(values) * 1000:7.1f} ms   "
              f"best {min(values) * 1000:7.1f} ms   ({len(values)} runs)")
    ratio = statistics.median(samples["gitopsctl --help"]) / statistics.median(samples["kubectl --help"])
    print(f"ratio (median gitopsctl / median kubectl): {ratio:.2f}  (goal <= 2.00)")


if __name__ == "__main__":
    main()
