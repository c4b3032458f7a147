"""Start-up time: `gitopsctl --help` against `kubectl --help`, measured side by side.

Both commands run alternately, so machine load affects them alike. Prints the median
and best wall time of each and the ratio of medians (goal: at most 2.0).

    python benchmarks/startup.py [--runs 30]
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    commands = {"gitopsctl --help": [find("gitopsctl"), "--help"],
                "kubectl --help": [find("kubectl"), "--help"]}
    for argv in commands.values():  # warm the page cache and bytecode
        wall(argv)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, argv in commands.items():
            samples[name].append(wall(argv))
    for name, values in samples.items():
        print(f"{name:18s} median {statistics.median(values) * 1000:7.1f} ms   "
              f"best {min(values) * 1000:7.1f} ms   ({len(values)} runs)")
    ratio = statistics.median(samples["gitopsctl --help"]) / statistics.median(samples["kubectl --help"])
    print(f"ratio (median gitopsctl / median kubectl): {ratio:.2f}  (goal <= 2.00)")


if __name__ == "__main__":
    main()
