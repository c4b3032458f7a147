"""Start-up time: gitopsctl against kubectl, measured side by side.

    python benchmarks/startup.py [--runs 30]

Every command runs in turn within each round (alternating), so machine load affects them
alike; the figures are medians over the rounds, with the best run beside them.

  help       wall time of `gitopsctl --help` and `gitopsctl bump --help` against
             `kubectl --help`. gitopsctl answers a help it has printed before from its help
             cache (gitopsctl/helpcache.py) without importing typer; the benchmark uses a
             cache directory of its own, filled by the warm-up run. `--help (cache miss)`
             is the first help after an install, upgrade or terminal resize: a fresh cache
             directory each run.
  status     time from process start to the first TCP connection reaching the Kubernetes
             API: `gitopsctl status` on a one-service homelab (a local git remote, a
             kubeconfig naming a loopback listener this script holds) against
             `kubectl get deploy` with the same kubeconfig. The listener accepts and
             closes; the process is then killed, so only the start-up is timed. The
             split: the same status with an audit hook that notes when the kubernetes
             client's import starts (time.perf_counter is the system-wide monotonic
             clock, so the child's and the parent's times compare). Beside the helps:
             a bare interpreter, and one importing the kubernetes client alone.

Goals (issue 17 point 5): both helps at most 1.5x kubectl --help; status's first request
at most 1.5x kubectl's when reachable (reported; the goal line says what bounds it).
Exits 1 when a help goal is missed. Prints the interpreter and the load average, both of
which move the figures.
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL = 1.5


def find(tool: str) -> str:
    beside = Path(sys.executable).parent / tool
    if beside.exists():
        return str(beside)
    found = shutil.which(tool)
    if not found:
        sys.exit(f"{tool} not found next to {sys.executable} or on PATH; install the test extra")
    return found


def wall(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                   env=env, timeout=60)
    return time.perf_counter() - start


def cold_wall(argv: list[str], env: dict[str, str]) -> float:
    with tempfile.TemporaryDirectory(prefix="startup-cold-") as fresh:
        return wall(argv, {**env, "XDG_CACHE_HOME": fresh})


class Listener:
    """A loopback TCP port; times a command's first connection to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def first_connection(self, argv: list[str], env: dict[str, str], cwd: Path) -> float:
        return self.traced_connection(argv, env, cwd)[0]

    def traced_connection(self, argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
        """(seconds to the first connection, the command's stderr)."""
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            if not select.select([self.sock], [], [], 60)[0]:
                sys.exit(f"{argv[0]} made no connection in 60 s: "
                         f"{proc.communicate(timeout=5)[1].decode()[-500:]}")
            elapsed = time.perf_counter() - start
            self.sock.accept()[0].close()
        finally:
            proc.kill()
            err = proc.communicate(timeout=30)[1].decode(errors="replace")
        marks = [float(line.split()[1]) - start for line in err.splitlines() if line.startswith("KUBE ")]
        return elapsed, marks[0] if marks else None


def homelab(root: Path, port: int) -> Path:
    """A one-service homelab whose Kubernetes target is the listener; returns the clone."""
    kubeconfig = root / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: lab\n"
        f"clusters:\n- name: lab\n  cluster:\n    server: http://127.0.0.1:{port}\n"
        "contexts:\n- name: lab\n  context: {cluster: lab, user: lab, namespace: shop}\n"
        "users:\n- name: lab\n  user: {token: benchmark}\n")
    clone = root / "homelab"
    (clone / "deploy" / "web").mkdir(parents=True)
    (clone / "deploy" / "web" / "deployment.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n"
        "  template:\n    spec:\n      containers:\n"
        '      - name: web\n        image: 127.0.0.1:5000/homelab/web:1 # {"$imagepolicy": "flux-system:web"}\n')
    (clone / "gitopsctl.yaml").write_text(
        "version: 2\nregistry: {url: 127.0.0.1:5000, project: homelab}\n"
        "services:\n  web:\n    image: web\n    context: apps/web\n    target: cluster\n"
        "    policy: flux-system:web\n    paths: [deploy/web]\n"
        "    workloads: [{kind: Deployment, name: web, namespace: shop}]\n"
        f"targets:\n  cluster:\n    kind: kubernetes\n    kubeconfig: {kubeconfig}\n"
        "    git_repository: {name: flux-system}\n    kustomizations: [{name: apps}]\n")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(root / "remote.git")], check=True)
    for step in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "homelab"],
                 ["remote", "add", "origin", str(root / "remote.git")],
                 ["push", "-q", "origin", "main"]):
        subprocess.run([*git, *step], cwd=clone, check=True, timeout=60)
    return clone


def interpreter(gitopsctl: str) -> str:
    """The Python the console script runs on: its version and the binary behind the venv."""
    shebang = Path(gitopsctl).read_text().splitlines()[0].removeprefix("#!").split()
    probe = "import sys; print(sys.version.split()[0], getattr(sys, '_base_executable', sys.executable))"
    return subprocess.run([*shebang, "-c", probe], capture_output=True, text=True,
                          check=True).stdout.strip()


def report(samples: dict[str, list[float]]) -> dict[str, float]:
    medians = {}
    for name, values in samples.items():
        medians[name] = statistics.median(values)
        print(f"  {name:38s} median {medians[name] * 1000:7.1f} ms   "
              f"best {min(values) * 1000:7.1f} ms   ({len(values)} runs)")
    return medians


def goal_line(what: str, ratio: float, bound: str = "") -> bool:
    held = ratio <= GOAL
    print(f"  {what:55s} {ratio:5.2f}x  goal <= {GOAL:.2f}x  {'held' if held else 'MISSED'}"
          + (f" ({bound})" if bound and not held else ""))
    return held


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    gitopsctl, kubectl, python = find("gitopsctl"), find("kubectl"), find("python")
    work = Path(tempfile.mkdtemp(prefix="startup-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITOPSCTL", "_GITOPSCTL"))}
    env.update(XDG_CACHE_HOME=str(work / "cache"), KUBECONFIG=str(work / "kubeconfig"))
    listener = Listener()
    clone = homelab(work, listener.port)
    help_runs = {"kubectl --help": (wall, [kubectl, "--help"]),
                 "gitopsctl --help": (wall, [gitopsctl, "--help"]),
                 "gitopsctl bump --help": (wall, [gitopsctl, "bump", "--help"]),
                 "gitopsctl --help (cache miss)": (cold_wall, [gitopsctl, "--help"]),
                 "python -c pass (the floor)": (wall, [python, "-c", "pass"]),
                 "python: import the kubernetes client": (wall, [python, "-c", KUBE_IMPORT])}
    first_runs = {"kubectl get deploy": [kubectl, "get", "deploy"],
                  "gitopsctl status": [gitopsctl, "status", "--limit", "1"]}
    print(f"gitopsctl runs on Python {interpreter(gitopsctl)}")
    load_before = os.getloadavg()[0]
    for timer, argv in help_runs.values():  # warm the page cache, bytecode and help cache
        timer(argv, env)
    for argv in first_runs.values():
        listener.first_connection(argv, env, clone)
    helps: dict[str, list[float]] = {name: [] for name in help_runs}
    firsts: dict[str, list[float]] = {name: [] for name in first_runs}
    traced: dict[str, list[float]] = {"start -> import kubernetes begins": [],
                                      "start -> first connection": []}
    traced_status = [python, "-c", TRACED_ENTRY, "status", "--limit", "1"]
    try:
        for _ in range(args.runs):
            for name, (timer, argv) in help_runs.items():
                helps[name].append(timer(argv, env))
            for name, argv in first_runs.items():
                firsts[name].append(listener.first_connection(argv, env, clone))
            connected, kube_import = listener.traced_connection(traced_status, env, clone)
            if kube_import is None:
                sys.exit("gitopsctl status connected without importing kubernetes: update the trace")
            traced["start -> import kubernetes begins"].append(kube_import)
            traced["start -> first connection"].append(connected)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average (1 min): {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print("help, wall time:")
    help_medians = report(helps)
    print("process start -> first connection to the Kubernetes API:")
    first_medians = report(firsts)
    print("gitopsctl status, traced (an audit hook notes when the kubernetes client's import starts):")
    split = report(traced)
    kube_help, kube_first = help_medians["kubectl --help"], first_medians["kubectl get deploy"]
    print("goals (ratio of medians to kubectl's):")
    held = [goal_line("gitopsctl --help / kubectl --help", help_medians["gitopsctl --help"] / kube_help),
            goal_line("gitopsctl bump --help / kubectl --help",
                      help_medians["gitopsctl bump --help"] / kube_help)]
    goal_line("(reported) --help cache miss / kubectl --help",
              help_medians["gitopsctl --help (cache miss)"] / kube_help, "typer's import")
    before = split["start -> import kubernetes begins"]
    goal_line("(reported) status first request / kubectl get deploy's",
              first_medians["gitopsctl status"] / kube_first,
              f"{(split['start -> first connection'] - before) * 1000:.0f} ms go to importing and "
              f"setting up the kubernetes client; up to its import, {before / kube_first:.2f}x")
    return 0 if all(held) else 1


# What the Kubernetes target imports before its first request (targets/kubeapi.py).
KUBE_IMPORT = "import kubernetes.client, kubernetes.config"
# The console script's two lines, after an audit hook that prints the (system-wide
# monotonic) time at which the first import of kubernetes starts (importlib.import_module
# on a background thread raises the event for "kubernetes.client", not its parent).
TRACED_ENTRY = """import os, sys, time
def hook(event, args):
    if event == "import" and args[0].split(".")[0] == "kubernetes" and not hasattr(hook, "seen"):
        hook.seen = True
        os.write(2, b"KUBE %.6f\\n" % time.perf_counter())
sys.addaudithook(hook)
from gitopsctl.cli import main
main()
"""


if __name__ == "__main__":
    sys.exit(main())
