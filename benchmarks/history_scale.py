"""What reading the deploy state costs on histories of 30, 30,000 and 300,000 commits.

    python benchmarks/history_scale.py [--runs N] [--sizes 30,30000,300000] [--old-runs N]

Writes three homelab repositories with git fast-import (tests/stage/historygen.py): two
thirds of the commits deploys of two services with the trailers gitopsctl writes, an
app commit before each release, a rollback every 40 releases, a suspend and a resume
early in history, and last a new app commit (the source a stage would deploy). Each is
a bare remote and a clone of it. Then, side by side, the sizes taking turns in every
round:

  read: the deploy state read in-process as each command reads it, with the queries
        it makes: `rollback --dry-run` (what to revert, what goes live after), `stage`
        (suspended? this source deployed or rolled back already? superseded?) and
        `status` (the suspension, each service's live deploy, the last 10 records)
  cli:  `gitopsctl -o json rollback --dry-run` as a subprocess in the clone (fetch from
        the bare remote, interpreter start-up and all)
  old:  for comparison, the whole-history `git log` that read_state ran before (and
        `suspension.current`'s scan for the newest suspend or resume)

Prints the median wall time and CPU time (this process and its git children: less
sensitive to a busy machine) of each, and the ratios to the 30-commit history: the median
over rounds of each round's ratio, the sizes of one round having run next to each other
under the same load. The goal (issue 17, point 1) is <= 1.3 at 30,000 and 300,000
commits, judged on that paired wall-time ratio. Exit 1 on a miss.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from gitopsctl import repo as gitrepo  # noqa: E402
from gitopsctl.deploy import rollback as rollback_engine  # noqa: E402
from gitopsctl.deploy import suspension  # noqa: E402
from gitopsctl.deploy.state import ensure_not_superseded, read_state  # noqa: E402
from tests.stage.historygen import busy_year, write_history  # noqa: E402

GOAL = 1.3
SERVICES = ("frontend", "backend")


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def build(root: Path, commits: int) -> tuple[Path, str]:
    """A bare remote of about `commits` commits and a clone of it; (clone, newest source)."""
    root.mkdir(parents=True)
    bare = root / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    written = write_history(bare, busy_year(commits - 2) + [("app",)])
    subprocess.run(["git", "clone", "-q", str(bare), str(root / "work")], check=True)
    return root / "work", written.tip


def tip_of(work: Path) -> str:
    return gitrepo.resolve_commit(work, "refs/remotes/origin/main")


def read_for_rollback(work: Path, _source: str) -> None:
    state = read_state(work, tip_of(work))
    _, commits, _ = rollback_engine._select(state, to=None, source=None)
    rollback_engine._live_after(state, commits)
    assert len(commits) == 2


def read_for_stage(work: Path, source: str) -> None:
    tip = tip_of(work)
    state = read_state(work, tip)
    suspension.ensure_not_suspended(work, tip, state)
    assert not state.live_of_source(source) and state.rollback_of(source) is None
    ensure_not_superseded(work, state, source, SERVICES)


def read_for_status(work: Path, _source: str) -> None:
    state = read_state(work, tip_of(work))
    assert suspension.current(work, state.tip, state) is None
    for service in SERVICES:
        assert state.live(service) is not None
    for record in state.recent(10):
        state.is_reverted(record.commit)


def old_full_scan(work: Path, _source: str) -> None:
    tip = tip_of(work)
    gitrepo.deploy_log(work, tip)
    gitrepo.deploy_log(work, tip, limit=1, deploys=False, pauses=True)


def cli_rollback_dry_run(work: Path, _source: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "gitopsctl", "-o", "json", "rollback",
                           "--dry-run"], cwd=work, capture_output=True, text=True, timeout=300)
    out = json.loads(proc.stdout)
    assert proc.returncode == 0 and len(out["reverted"]) == 2, proc.stderr


def cpu() -> float:
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                         resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn, work: Path, source: str) -> tuple[float, float]:
    """(wall, cpu) seconds of one call."""
    start, cpu_start = time.perf_counter(), cpu()
    fn(work, source)
    return time.perf_counter() - start, cpu() - cpu_start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--old-runs", type=int, default=3)
    parser.add_argument("--sizes", default="30,30000,300000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"load average at start: {load_average()}")
    measures = {"read: rollback --dry-run": read_for_rollback, "read: stage": read_for_stage,
                "read: status": read_for_status, "cli: rollback --dry-run": cli_rollback_dry_run}
    with tempfile.TemporaryDirectory(prefix="history-scale-") as tmp:
        repos = {}
        for size in sizes:
            start = time.perf_counter()
            repos[size] = build(Path(tmp, str(size)), size)
            print(f"wrote {size:,} commits in {time.perf_counter() - start:.1f}s", flush=True)
        times: dict[tuple[str, int], list[tuple[float, float]]] = {}
        for name, fn in measures.items():  # one warm-up each: page cache, imports
            for size in sizes:
                fn(*repos[size])
        for run in range(args.runs):
            turn = sizes[run % len(sizes):] + sizes[:run % len(sizes)]
            for name, fn in measures.items():
                for size in turn:
                    times.setdefault((name, size), []).append(timed(fn, *repos[size]))
        for run in range(args.old_runs):
            for size in sizes:
                times.setdefault(("old: whole-history scan", size), []).append(
                    timed(old_full_scan, *repos[size]))
    print(f"load average at end: {load_average()}")
    return report(times, sizes, args.runs)


def report(times: dict, sizes: list[int], runs: int) -> int:
    base = sizes[0]
    header = " | ".join(f"{s:,} commits" for s in sizes)
    ratios = " | ".join(f"{s:,}/{base}" for s in sizes[1:])
    print(f"\nmedians of {runs} rounds (old: fewer), milliseconds wall (cpu); ratios: median "
          "of the per-round wall ratios (cpu: ratio of the cpu medians)\n")
    print(f"| measure | {header} | {ratios} | goal |")
    print("|---" * (len(sizes) * 2 + 1) + "|")
    missed = []
    for name in dict.fromkeys(k[0] for k in times):
        wall = {s: [t[0] for t in times[(name, s)]] for s in sizes}
        used = {s: statistics.median(t[1] for t in times[(name, s)]) for s in sizes}
        cells = " | ".join(f"{statistics.median(wall[s]) * 1000:.1f} ({used[s] * 1000:.1f})"
                           for s in sizes)
        rs = [statistics.median(a / b for a, b in zip(wall[s], wall[base])) for s in sizes[1:]]
        cpu_rs = [used[s] / used[base] if used[base] else float("nan") for s in sizes[1:]]
        judged = not name.startswith("old")
        goal = f"<= {GOAL}" if judged else "(before)"
        print(f"| {name} | {cells} | "
              + " | ".join(f"{r:.2f} ({c:.2f})" for r, c in zip(rs, cpu_rs)) + f" | {goal} |")
        if judged:
            missed += [f"{name} at {s:,}: {r:.2f}" for s, r in zip(sizes[1:], rs) if r > GOAL]
    if missed:
        print("\nGOAL MISSED: " + "; ".join(missed))
        return 1
    print(f"\nevery ratio within {GOAL}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
