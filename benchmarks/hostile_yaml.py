"""`gitopsctl check` and `bump` on hostile YAML: a 50 MB file, an alias bomb, deep nesting.

    python benchmarks/hostile_yaml.py [--size-mb 50] [--timeout 120]

Builds each case in a temporary git repository and runs the real CLI as a subprocess,
measuring wall time and the peak RSS of that one child (os.wait4's rusage, so one run
never inherits another's peak). Next to it, what a user would run instead on the same
file: `kubectl kustomize` (Go, go-yaml) and a plain PyYAML CSafeLoader load. Goal from
issue 12: check on the 50 MB file within 10 s and 300 MB, and every hostile case ends
in exit 2 (gitopsctl refuses it, naming the file) rather than 70 or a hang.

Also measured: a file just under gitopsctl's 8 MiB limit (what check costs on the
biggest file it accepts), and a 50 MB file without a marker under bump's path (bump
screens it for the token in chunks and leaves it alone).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

POLICY = "flux-system:frontend"
NEW = f"{POLICY}=harbor.lan/homelab/frontend:main-9f8e7d6-1764200000"
GOAL_SECONDS, GOAL_MB = 10.0, 300.0
COMPARISON_MEMORY = 4 << 30

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{i}
  labels: {{app.kubernetes.io/name: app-{i}}}
spec:
  replicas: 2
  template:
    spec:
      containers:
        - name: app
          image: harbor.lan/homelab/other-{i}:v1
          env:
            - {{name: LOG_LEVEL, value: info}}
          resources:
            requests: {{cpu: 10m, memory: 16Mi}}
---
"""
MARKED = ('apiVersion: v1\nkind: Pod\nmetadata:\n  name: marked\nspec:\n  containers:\n'
          '    - name: app\n      image: harbor.lan/homelab/frontend:main-1a2b3c4-1 '
          f'# {{"$imagepolicy": "{POLICY}"}}\n')
ALIAS_BOMB = "".join(
    [f'a0: &a0 [{",".join(["lol"] * 9)}]\n'] +
    [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9)] +
    ['image: harbor.lan/homelab/frontend:main-1a2b3c4-1 # {"$imagepolicy": "' + POLICY + '"}\n'])


def big_manifest(size: int, marked: bool) -> str:
    out, total, i = [], 0, 0
    if marked:
        out.append(MARKED + "---\n")
    while total < size:
        doc = DEPLOYMENT.format(i=i)
        out.append(doc)
        total += len(doc)
        i += 1
    return "".join(out)


def deep_nesting(levels: int) -> str:
    return ('image: harbor.lan/homelab/frontend:main-1a2b3c4-1 # {"$imagepolicy": "' + POLICY
            + '"}\nnested: ' + "[" * levels + "]" * levels + "\n")


def cli() -> list[str]:
    script = Path(sys.executable).parent / "gitopsctl"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gitopsctl"]


def _cap_memory() -> None:
    # kustomize expands aliases without bound (20 GB within a minute on the alias bomb):
    # keep the comparison from taking the machine down with it
    resource.setrlimit(resource.RLIMIT_AS, (COMPARISON_MEMORY, COMPARISON_MEMORY))


def run(argv: list[str], cwd: Path, timeout: float, *, capped: bool = False) -> dict:
    """Exit code, wall seconds and peak RSS (MB) of one child and what it waited for.

    ru_maxrss survives exec, so a child forked from a big parent would report the
    parent's size: the parent never holds the generated files (a child writes them).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITOPSCTL_")}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL,
                                preexec_fn=_cap_memory if capped else None)
        deadline = start + timeout
        status, usage, timed_out = None, None, False
        while status is None:
            pid, wait_status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status, usage = wait_status, rusage
            elif time.perf_counter() > deadline:
                proc.kill()
                _, wait_status, rusage = os.wait4(proc.pid, 0)
                status, usage, timed_out = wait_status, rusage, True
            else:
                time.sleep(0.01)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace").strip().splitlines()
    return {"rc": "timeout" if timed_out else proc.returncode, "seconds": elapsed,
            "mb": usage.ru_maxrss / 1024, "first": stderr[0][:110] if stderr else ""}


def git_repo(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True)
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@localhost",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@localhost"}
    for argv in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                 ["git", "commit", "-q", "-m", "seed"]):
        subprocess.run(argv, cwd=root, env=env, check=True)
    return root


def pyyaml_argv(path: Path) -> list[str]:
    code = ("import sys, yaml; [None for _ in yaml.load_all(open(sys.argv[1], encoding='utf-8'), "
            "Loader=yaml.CSafeLoader)]")
    return [sys.executable, "-c", code, str(path)]


def kustomize_argv(directory: Path) -> list[str] | None:
    from gitopsctl.executables import find_tool

    kubectl = find_tool("kubectl")
    return [kubectl, "kustomize", str(directory)] if kubectl else None


def measure_case(name: str, root: Path, timeout: float) -> list[tuple]:
    target = root / "clusters/case/manifest.yaml"
    rows = [(name, "gitopsctl check", run([*cli(), "--no-color", "check", str(target)], root,
                                          timeout)),
            (name, "gitopsctl bump", run([*cli(), "--no-color", "bump", "--path", "clusters",
                                          "--policy", NEW, "--no-commit"], root, timeout))]
    changed = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True,
                             text=True, check=True).stdout.strip()
    rows[-1][2]["first"] += f"  [tree {'CHANGED' if changed else 'unchanged'}]"
    kustomize = kustomize_argv(target.parent)
    if kustomize:
        rows.append((name, "kubectl kustomize", run(kustomize, root, timeout, capped=True)))
    rows.append((name, "PyYAML CSafeLoader", run(pyyaml_argv(target), root, timeout,
                                                  capped=True)))
    return rows


def cases(size_mb: float) -> list[tuple[str, str]]:
    from gitopsctl import yamlsafe

    size = int(size_mb * 1_000_000)
    return [
        (f"{size_mb:g} MB, marked", big_manifest(size, marked=True)),
        (f"{size_mb:g} MB, no marker", big_manifest(size, marked=False)),
        ("just under 8 MiB", big_manifest(yamlsafe.MAX_FILE_BYTES - 200_000, marked=True)),
        ("alias bomb (10 lines)", ALIAS_BOMB),
        ("nesting 100,000 deep", deep_nesting(100_000)),
        ("NUL in marked file", MARKED.replace("name: app", "name: a\x00pp")),
    ]


def write_cases(workdir: Path, size_mb: float) -> None:
    """Run in a child process: one git repository per case; prints the case names."""
    names = []
    for index, (name, text) in enumerate(cases(size_mb)):
        git_repo(workdir / f"case{index}", {"clusters/case/manifest.yaml": text,
                                            "clusters/case/kustomization.yaml":
                                                "resources:\n  - manifest.yaml\n"})
        names.append(name)
    print(json.dumps(names))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=50.0)
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds before a run is killed (reported as timeout)")
    parser.add_argument("--write-cases", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_cases:
        write_cases(args.write_cases, args.size_mb)
        return 0

    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="gitopsctl-hostile-bench-"))
    rows: list[tuple] = []
    try:
        made = subprocess.run([sys.executable, __file__, "--size-mb", str(args.size_mb),
                               "--write-cases", str(workdir)], capture_output=True, text=True,
                              check=True, timeout=600)
        names = json.loads(made.stdout)
        for index, name in enumerate(names):
            rows += measure_case(name, workdir / f"case{index}", args.timeout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    load_after = os.getloadavg()

    print(f"{'case':<24} {'command':<20} {'exit':>7} {'wall s':>8} {'peak MB':>8}  first line of "
          "stderr")
    for name, command, r in rows:
        print(f"{name:<24} {command:<20} {r['rc']!s:>7} {r['seconds']:>8.2f} {r['mb']:>8.0f}  "
              f"{r['first']}")
    ok = True
    big_check = next(r for n, c, r in rows if n == names[0] and c == "gitopsctl check")
    met = big_check["seconds"] <= GOAL_SECONDS and big_check["mb"] <= GOAL_MB
    ok &= met
    print(f"\ngoal: check on the {args.size_mb:g} MB file within {GOAL_SECONDS:.0f} s and "
          f"{GOAL_MB:.0f} MB: {big_check['seconds']:.2f} s, {big_check['mb']:.0f} MB -> "
          f"{'met' if met else 'MISSED'}")
    hostile = {names[i] for i in (0, 3, 4, 5)}
    for name, command, r in rows:
        if name in hostile and command.startswith("gitopsctl") and r["rc"] != 2:
            ok = False
            print(f"MISSED: {command} on {name} ended with {r['rc']}, not 2")
    print(f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after, on "
          f"{os.cpu_count()} CPUs")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
