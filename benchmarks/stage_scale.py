"""How `stage` grows with the number of services: 1, 3 and 9, one group each or all in one.

    .venv/bin/python benchmarks/stage_scale.py [--runs N]

Each homelab is the general model (config v2 `services:` + `targets:`): the services
alternate between a Kubernetes target (one setter-marked Deployment file each) and a VM
target (one compose file holding all their markers), on a REAL git remote (a bare
repository on disk): every deploy commit is really built, pushed and read back, the state
really read from git. The targets are IN-MEMORY with fixed, known times (applying the
Kubernetes target 0.10 s, the VM 0.20 s; each service's wait 0.30-0.50 s): the Kubernetes
API emulator needs a container per pod, nine of them on this shared 2-core machine, so
the targets' own times here are the sleeps they do, measured where they happen.

Per service count and grouping (one group per service, in order; or all in one group):
  total      stage() called in-process, from start to its result (interpreter and CLI
             start-up are not counted here: benchmarks/startup.py measures those)
  waits      what the targets took to become healthy: per group, the longest of its
             services' (its target's apply + its own wait), summed over the groups
  overhead   total - waits: git (fetch, plan, one commit and push per service), the
             engine's bookkeeping, thread start-up
Goals (exit 1 on a miss): overhead per service at 3 and 9 services no more than 1.3x the
figure at 1 (plus 20 ms for timer noise), whichever the grouping; one group of 9 spends
about its longest single wait waiting, not the sum: its wait (its longest "<service>
healthy" step) at most 1.2x the longest of the nine when each is its own group, + 0.1 s.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

COUNTS = (1, 3, 9)
APPLY_SECONDS = {"cluster": 0.10, "box": 0.20}
REGISTRY = "127.0.0.1:5000/homelab"
PER_SERVICE_GROWTH = 1.3
NOISE = 0.02
OVERLAP_FACTOR, OVERLAP_SLACK = 1.2, 0.1


def wait_seconds(index: int) -> float:
    return 0.30 + 0.05 * (index % 5)


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the homelab in git

def homelab_files(services: dict[str, str], grouped: bool) -> dict[str, str]:
    from ruamel.yaml import YAML

    entries, compose = {}, ["services:"]
    for name, target in services.items():
        entry = {"image": name, "context": f"apps/{name}", "target": target,
                 "policy": f"flux-system:{name}"}
        if target == "cluster":
            entry.update(paths=[f"deploy/{name}"], workloads=[{"kind": "Deployment", "name": name}])
        else:
            entry.update(paths=["deploy/box/compose.yaml"], compose_services=[name])
            compose += [f"  {name}:",
                        f"    image: {REGISTRY}/{name}:old # {{\"$imagepolicy\": \"flux-system:{name}\"}}"]
        entries[name] = entry
    order = [list(services)] if grouped and len(services) > 1 else list(services)
    config = {"version": 2, "registry": {"url": "127.0.0.1:5000", "project": "homelab"},
              "services": entries,
              "targets": {"cluster": {"kind": "kubernetes", "git_repository": {"name": "flux-system"},
                                      "kustomizations": [{"name": "apps"}]},
                          "box": {"kind": "vm", "host": "127.0.0.2", "user": "deploy",
                                  "compose_file": "deploy/box/compose.yaml"}},
              "stage": {"order": order, "delay": "0s"}, "timeouts": {"failure": "60s"}}
    buf = io.StringIO()
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.dump(config, buf)
    files = {"gitopsctl.yaml": buf.getvalue(), ".gitignore": ".gitopsctl/\n"}
    for name, target in services.items():
        if target == "cluster":
            files[f"deploy/{name}/deployment.yaml"] = (
                f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  template:\n"
                f"    spec:\n      containers:\n        - name: {name}\n"
                f"          image: {REGISTRY}/{name}:old # {{\"$imagepolicy\": \"flux-system:{name}\"}}\n")
    if len(compose) > 1:
        files["deploy/box/compose.yaml"] = "\n".join(compose) + "\n"
    return files


# ---------------------------------------------------------------- in-memory targets

@dataclass
class Span:
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


class KnownTarget:
    def __init__(self, owner: "KnownTargets", service: str, target: str, wait: float):
        self.owner, self.service, self.target, self.wait = owner, service, target, wait
        self.name = service

    def apply(self, revision: str, deadline: float) -> None:
        start = time.monotonic()
        time.sleep(APPLY_SECONDS[self.target])
        self.owner.record(("apply", self.target, revision), Span(start, time.monotonic()))

    def wait_healthy(self, revision: str, deadline: float):
        from gitopsctl.health import Check, HealthReport

        start = time.monotonic()
        time.sleep(self.wait)
        self.owner.record(("wait", self.service, revision), Span(start, time.monotonic()))
        return HealthReport(target=self.service, healthy=True, checks=[Check("http", True, "200 OK")])

    def check_health(self):
        from gitopsctl.health import HealthReport

        return HealthReport(target=self.service, healthy=True)

    def observe(self, deadline: float, mismatch=None):
        return self.check_health()


class KnownTargets:
    """A TargetSet whose targets take known times and record when they ran."""

    def __init__(self, services: dict[str, str]):
        self.services = services
        self.spans: dict[tuple, Span] = {}
        self._lock = threading.Lock()
        self._targets = {s: KnownTarget(self, s, t, wait_seconds(i)) for i, (s, t) in enumerate(services.items())}

    def record(self, key: tuple, span: Span) -> None:
        with self._lock:
            self.spans[key] = span

    def target_name(self, service: str) -> str:
        return self.services[service]

    def for_service(self, service: str) -> KnownTarget:
        return self._targets[service]

    def prepare(self) -> None:
        pass

    def waits(self, groups: list[list[str]]) -> float:
        """Per group, the longest of its services' (its target's apply + its own wait), summed."""
        by_service = {}
        for (kind, name, revision), span in self.spans.items():
            if kind == "wait":
                applied = self.spans[("apply", self.services[name], revision)]
                by_service[name] = applied.seconds + span.seconds
        return sum(max(by_service[s] for s in group) for group in groups)


# ---------------------------------------------------------------- one measurement

@dataclass
class Run:
    total: float        # stage() start to result
    waits: float        # inherent: what the targets took, per group its longest, summed
    group_wait: float   # the last group's wait as stage saw it: its longest "<service> healthy" step
    single_waits: list  # every "<service> healthy" step (one group per service: each a single wait)
    steps: dict         # where the time went: seconds per kind of step ("bump", "healthy", ...)

    @property
    def overhead(self) -> float:
        return self.total - self.waits


def split(result) -> dict:
    """Seconds per kind of step, the services' own bumps added up; the rest of the stage
    (its groups' waits, which overlap, and what no step times) is "waits and between"."""
    kinds: dict[str, float] = {}
    for step in result.steps:
        if step.name.endswith(" healthy"):
            continue
        kind = "bump" if step.name.startswith("bump ") else step.name
        kinds[kind] = kinds.get(kind, 0.0) + step.elapsed
    kinds["waits and between"] = result.elapsed - sum(kinds.values())
    return kinds


def healthy_steps(result) -> list[float]:
    return [s.elapsed for s in result.steps if s.name.endswith(" healthy") and s.status == "ok"]


def measure(root: Path, count: int, grouped: bool, runs: int) -> list[Run]:
    from gitopsctl.commands import Context
    from gitopsctl.deploy.stage import stage
    from gitopsctl.sandbox.lab.gitremote import make_git_remote

    services = {f"svc{i}": ("cluster" if i % 2 == 0 else "box") for i in range(count)}
    groups = [list(services)] if grouped else [[s] for s in services]
    remote = make_git_remote(root, files=homelab_files(services, grouped))
    out = []
    for run in range(runs + 1):  # the first run warms imports and caches; it is not counted
        remote.write({"app/version.txt": f"v{run}\n"})
        source = remote.commit_all(f"app: v{run}")
        remote.push()
        targets = KnownTargets(services)
        ctx = Context(repo=remote.work, config_path=remote.work / "gitopsctl.yaml", environ={})
        start = time.perf_counter()
        result = stage(ctx, targets, source=source, allow_unbuilt=True)
        total = time.perf_counter() - start
        if result.exit_code != 0:
            raise SystemExit(f"stage of {count} services failed: {result.to_dict()}")
        waits = targets.waits(groups)
        steps = healthy_steps(result)
        if run:
            out.append(Run(total, waits, max(steps[-len(groups[-1]):]), steps, split(result)))
    return out


@contextmanager
def _cases(kube: bool):
    """(work directory, measure(work, count, grouped, runs)) for the targets chosen."""
    if not kube:
        with tempfile.TemporaryDirectory(prefix="stage-scale-") as tmp:
            yield Path(tmp), lambda work, count, grouped, runs: measure(
                work / f"{count}-{grouped}", count, grouped, runs)
        return
    import stage_scale_kube

    with stage_scale_kube.lab() as env:
        yield env["work"], lambda work, count, grouped, runs: stage_scale_kube.measure(
            env, count, grouped, runs)


def median(runs: list[Run], field: str) -> float:
    return statistics.median(getattr(r, field) for r in runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="measured runs per case (median)")
    parser.add_argument("--kube", action="store_true",
                        help="real targets: N Deployments on the Kubernetes API emulator (slow)")
    args = parser.parse_args()
    what = ("REAL targets: N Deployments on the Kubernetes API emulator (real client, pods are "
            "containers), REAL git remote" if args.kube else
            "REAL git remote (bare repository), IN-MEMORY targets with fixed wait times")
    print(f"stage with 1, 3 and 9 services: {what}; load "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs; "
          f"median of {args.runs} runs")
    missed: list[str] = []
    with _cases(args.kube) as (tmp, measure_case):
        results: dict[tuple[int, bool], list[Run]] = {}
        for grouped in (False, True):
            for count in COUNTS:
                if grouped and count == 1:
                    results[(1, True)] = results[(1, False)]
                    continue
                say(f"{count} services, {'one group' if grouped else 'one group each'}")
                results[(count, grouped)] = measure_case(tmp, count, grouped, args.runs)
        print("\nwhere the time went (median seconds per kind of step):")
        for (count, grouped), runs in results.items():
            kinds = {k: statistics.median(r.steps.get(k, 0.0) for r in runs) for k in runs[0].steps}
            print(f"  {count} {'grouped' if grouped else 'in order'}: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in kinds.items() if v >= 0.005))
        for grouped in (False, True):
            print(f"\n{'all in one group' if grouped else 'one group per service, in order'}:")
            print(f"  {'services':>8} {'total':>8} {'waits':>8} {'overhead':>9} {'/service':>9} "
                  f"{'x total':>8} {'x waits':>8} {'x overhead':>10}")
            base = results[(1, grouped)]
            per_one = median(base, "overhead")
            for count in COUNTS:
                runs = results[(count, grouped)]
                total, waits, overhead = (median(runs, f) for f in ("total", "waits", "overhead"))
                print(f"  {count:>8} {total:>7.2f}s {waits:>7.2f}s {overhead:>8.2f}s "
                      f"{overhead / count:>8.3f}s {total / median(base, 'total'):>7.2f}x "
                      f"{waits / median(base, 'waits'):>7.2f}x {overhead / per_one:>9.2f}x")
                if overhead / count > PER_SERVICE_GROWTH * per_one + NOISE:
                    missed.append(f"{count} services ({'grouped' if grouped else 'in order'}): "
                                  f"overhead {overhead / count:.3f}s per service > "
                                  f"{PER_SERVICE_GROWTH}x {per_one:.3f}s + {NOISE}s")
        group_wait = median(results[(9, True)], "group_wait")
        singles = [statistics.median(r.single_waits[i] for r in results[(9, False)]) for i in range(9)]
        longest, summed = max(singles), sum(singles)
        bound = OVERLAP_FACTOR * longest + OVERLAP_SLACK
        print(f"\none group of 9: its wait took {group_wait:.2f}s; the longest single service's wait "
              f"(its own group) {longest:.2f}s, all nine one after the other {summed:.2f}s "
              f"(goal: at most {OVERLAP_FACTOR}x the longest + {OVERLAP_SLACK}s = {bound:.2f}s)")
        if group_wait > bound:
            missed.append(f"group of 9 waited {group_wait:.2f}s > {bound:.2f}s: its waits did not overlap")
    print(f"\nload at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for miss in missed:
        print(f"MISSED: {miss}")
    print("all goals met" if not missed else f"{len(missed)} goal(s) missed")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
