"""How long `gitopsctl bump --no-commit` takes on big and small repositories.

    python benchmarks/bump_scale.py [--runs N]

Generates two repositories of Kubernetes-looking YAML under a temporary directory:
1,000 files of which 50 carry a setter marker, and 20 files of which 5 do. Each run
is the real CLI as a subprocess (wall time, interpreter start-up included), bumping
every marker to a new value so each run really edits and writes files. Prints the
median and worst run and the targets from issue 3 (< 1 s and < 0.3 s), the CPU time
of the child (less sensitive to a busy machine than wall time), the floor (the same
command on an empty directory: what interpreter and CLI start-up cost), and the bump
itself called in-process.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

POLICY = "flux-system:frontend"
TARGETS = {1000: 1.0, 20: 0.3}

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{i}
  labels:
    app.kubernetes.io/name: app-{i}
spec:
  replicas: 2
  selector:
    matchLabels:
      app.kubernetes.io/name: app-{i}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: app-{i}
    spec:
      containers:
        - name: app
          image: {image}{marker}
          ports:
            - containerPort: 8080
          readinessProbe:
            httpGet: {{path: /healthz, port: 8080}}
          resources:
            requests: {{cpu: 10m, memory: 16Mi}}
---
apiVersion: v1
kind: Service
metadata:
  name: app-{i}
spec:
  selector:
    app.kubernetes.io/name: app-{i}
  ports:
    - port: 80
      targetPort: 8080
"""


def generate(root: Path, files: int, marked: int) -> None:
    step = files // marked
    for i in range(files):
        directory = root / f"apps/app-{i // 50:03d}"
        directory.mkdir(parents=True, exist_ok=True)
        is_marked = i % step == 0 and i // step < marked
        marker = f' # {{"$imagepolicy": "{POLICY}"}}' if is_marked else ""
        image = "harbor.lan/homelab/frontend:main-0000000-1" if is_marked \
            else f"harbor.lan/homelab/other-{i}:v1"
        (directory / f"app-{i}.yaml").write_text(DEPLOYMENT.format(i=i, image=image, marker=marker))


def cli() -> list[str]:
    script = Path(sys.executable).parent / "gitopsctl"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gitopsctl"]


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bump_once(root: Path, run: int) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds, stdout) of one real CLI run."""
    ref = f"harbor.lan/homelab/frontend:main-{run:07x}-{1764200000 + run}"
    argv = [*cli(), "bump", "--path", str(root), "--policy", f"{POLICY}={ref}", "--no-commit"]
    cpu = _child_cpu()
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=root, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"bump failed ({proc.returncode}): {proc.stderr}")
    return elapsed, _child_cpu() - cpu, proc.stdout


def in_process(root: Path, runs: int) -> float:
    """Median seconds of the bump itself (no interpreter or CLI start-up), for comparison."""
    from gitopsctl.commands import Context
    from gitopsctl.bumping import bump

    ctx = Context(repo=root, config_path=root / "gitopsctl.yaml", environ={})
    times = []
    for run in range(runs):
        ref = f"harbor.lan/homelab/frontend:main-{run:07x}-{1864200000 + run}"
        start = time.perf_counter()
        bump(ctx, paths=[root], policies=[f"{POLICY}={ref}"], commit=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(files: int, marked: int, runs: int, workdir: Path) -> dict:
    root = workdir / f"repo-{files}"
    root.mkdir(parents=True, exist_ok=True)
    if files:
        generate(root, files, marked)
    times, cpus = [], []
    for run in range(1, runs + 1):
        elapsed, cpu, out = bump_once(root, run)
        changes = sum(1 for line in out.splitlines() if " -> " in line)
        if changes != marked:
            raise SystemExit(f"expected {marked} changes, bump reported {changes}")
        times.append(elapsed)
        cpus.append(cpu)
    return {"files": files, "marked": marked, "runs": runs, "median": statistics.median(times),
            "worst": max(times), "best": min(times), "cpu": statistics.median(cpus),
            "target": TARGETS.get(files), "in_process": in_process(root, runs) if files else 0.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="gitopsctl-bump-bench-"))
    try:
        bump_once_warm = measure(20, 5, 1, workdir / "warm")  # fill the OS file cache
        del bump_once_warm
        rows = [measure(1000, 50, args.runs, workdir), measure(20, 5, args.runs, workdir),
                measure(0, 0, args.runs, workdir)]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ok = True
    print(f"{'files':>6} {'marked':>6} {'median s':>9} {'best s':>7} {'worst s':>8} {'cpu s':>6} "
          f"{'in-proc s':>9} {'target s':>9}")
    for row in rows:
        target = row["target"]
        met = target is None or row["median"] < target
        ok &= met
        verdict = "(floor: start-up only)" if target is None else "ok" if met else "MISSED"
        shown = f"{target:>9.1f}" if target is not None else f"{'-':>9}"
        print(f"{row['files']:>6} {row['marked']:>6} {row['median']:>9.3f} {row['best']:>7.3f} "
              f"{row['worst']:>8.3f} {row['cpu']:>6.3f} {row['in_process']:>9.3f} {shown}  {verdict}")
    load = os.getloadavg()[0]
    print(f"load average {load:.2f} on {os.cpu_count()} CPUs")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
