"""Deploy histories of any length written straight into a real git repository.

`git fast-import` writes 300,000 commits in seconds where `git commit` would take an hour.
A history is a list of events, oldest first; each becomes one first-parent commit on
`refs/heads/main` carrying the trailers gitopsctl writes (deploy/state.py, rollback.py,
suspension.py), and `get-mark` hands back every commit's sha as it is written, so later
messages can name earlier commits as gitopsctl's do.

    ("app",)                         an app commit: the source the next deploys name
    ("deploy", service)              deploy of the newest app commit
    ("rollback", [i, j, ...])        reverts the deploy events at those indexes, naming the
                                     source of the first of them
    ("suspend",) / ("resume",)       pause records
    ("other",)                       a commit nobody greps for (a person's edit)
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.fixtures.configs import kube_target, service, v2_text, vm_target

REGISTRY = "127.0.0.1:5000/homelab"
DIGEST = "sha256:" + "ab" * 32
START = 1_760_000_000


def config_text() -> str:
    """Two services, frontend on Kubernetes and backend on a VM, as the seed homelab."""
    services = {"frontend": service("frontend", "cluster",
                                    workloads=[{"kind": "Deployment", "name": "frontend"}]),
                "backend": service("backend", "vm", paths=["deploy/vm/compose.yaml"],
                                   compose_services=["backend"])}
    targets = {"cluster": kube_target(), "vm": vm_target(compose_file="deploy/vm/compose.yaml")}
    return v2_text(services, targets, stage={"order": ["frontend", "backend"], "delay": "0s"},
                   timeouts={"failure": "2s", "http": "1s"})


def _deployment(tag: str) -> str:
    return ("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: frontend\nspec:\n"
            "  template:\n    spec:\n      containers:\n        - name: frontend\n"
            f'          image: {REGISTRY}/frontend:{tag} # {{"$imagepolicy": "flux-system:frontend"}}\n')


def _compose(tag: str) -> str:
    return (f"services:\n  backend:\n    image: {REGISTRY}/backend:{tag}"
            ' # {"$imagepolicy": "flux-system:backend"}\n')


FILES = {"frontend": ("deploy/frontend/deployment.yaml", _deployment),
         "backend": ("deploy/vm/compose.yaml", _compose)}


@dataclass
class Written:
    """What was written: the sha of every event, oldest first."""

    shas: list[str] = field(default_factory=list)
    tip: str = ""


class _Stream:
    def __init__(self, repo: Path):
        self.proc = subprocess.Popen(["git", "fast-import", "--quiet", "--done"], cwd=repo,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.mark = 0

    def commit(self, message: str, files: dict[str, str], when: int) -> int:
        self.mark += 1
        out = [f"commit refs/heads/main\nmark :{self.mark}\n"
               f"committer gitopsctl <gitopsctl@homelab.lan> {when} +0000\n"]
        raw = message.encode()
        out.append(f"data {len(raw)}\n")
        parts = ["".join(out).encode(), raw, b"\n"]
        for path, text in files.items():
            body = text.encode()
            parts += [f"M 100644 inline {path}\ndata {len(body)}\n".encode(), body, b"\n"]
        self.proc.stdin.write(b"".join(parts) + b"\n")
        return self.mark

    def sha(self, mark: int) -> str:
        self.proc.stdin.write(f"get-mark :{mark}\n".encode())
        self.proc.stdin.flush()
        return self.proc.stdout.readline().decode().strip()

    def close(self) -> None:
        self.proc.stdin.write(b"done\n")
        self.proc.stdin.close()
        if self.proc.wait(timeout=600) != 0:
            raise RuntimeError("git fast-import failed")


def write_history(repo: Path, events: list[tuple], *, pause_trailers: bool = True) -> Written:
    """Write `events` to `repo` (a repository, bare or not, with no main yet), after one
    commit holding gitopsctl.yaml and the two marker files. `pause_trailers`: deploys and
    rollbacks carry the Gitopsctl-Suspension trailer as gitopsctl writes them now; False
    is a history written before it did (a bool per event index works too)."""
    stream = _Stream(repo)
    written = Written()
    tags = {"frontend": "old", "backend": "old"}
    base = stream.commit("homelab: initial\n", {
        "gitopsctl.yaml": config_text(), ".gitignore": ".gitopsctl/\n",
        "app/version.txt": "0\n", FILES["frontend"][0]: _deployment("old"),
        FILES["backend"][0]: _compose("old")}, START)
    written.tip = stream.sha(base)
    source = None
    standing = "none"  # the suspend commit standing, as the trailer names it
    deployed: dict[int, tuple[str, str]] = {}  # event index -> (service, tag before it)
    for index, event in enumerate(events):
        when = START + 60 * (index + 1)
        kind = event[0]
        with_trailer = pause_trailers(index) if callable(pause_trailers) else pause_trailers
        pause = f"Gitopsctl-Suspension: {standing}\n" if with_trailer else ""
        if kind == "app":
            mark = stream.commit(f"app: change {index}\n", {"app/version.txt": f"{index}\n"}, when)
            source = stream.sha(mark)
        elif kind == "deploy":
            svc = event[1]
            src = source or "0" * 40
            tag = f"main-{src[:7]}-{when}"
            deployed[index] = (svc, tags[svc])
            tags[svc] = tag
            image = f"{REGISTRY}/{svc}:{tag}"
            message = (f"deploy({svc}): {src[:7]} → {image} [skip ci]\n\n"
                       f"Gitopsctl-Source: {src}\nGitopsctl-Stage: {svc}\n"
                       f"Gitopsctl-Image: {image}@{DIGEST}\n{pause}")
            path, render = FILES[svc]
            mark = stream.commit(message, {path: render(tag)}, when)
        elif kind == "rollback":
            targets = [i for i in event[1] if i in deployed]
            reverted = [written.shas[i] for i in targets]
            of = _source_of(events, targets[0]) if targets else None
            of_sha = written.shas[of] if of is not None else "unknown"
            files = {}
            for i in sorted(targets):  # the oldest reverted deploy of a service decides its file
                svc, before = deployed[i]
                if FILES[svc][0] not in files:
                    files[FILES[svc][0]] = FILES[svc][1](before)
            message = (f"rollback: {of_sha[:7]} — bench failure [skip ci]\n\nRequested by hand.\n\n"
                       f"Reverts: {', '.join(reverted)}\nReason: bench failure\n{pause}"
                       f"Gitopsctl-Rollback-Of: {of_sha}\n")
            mark = stream.commit(message, files or {"app/rollback.txt": f"{index}\n"}, when)
        elif kind in ("suspend", "resume"):
            key = "Suspend" if kind == "suspend" else "Resume"
            by = "Suspended-By" if kind == "suspend" else "Resumed-By"
            subject = "chore: suspend deploys — maintenance" if kind == "suspend" else "chore: resume deploys"
            message = f"{subject} [skip ci]\n\nGitopsctl-{key}: maintenance\nGitopsctl-{by}: bench\n"
            mark = stream.commit(message, {"app/pause.txt": f"{index}\n"}, when)
        elif kind == "other":
            mark = stream.commit(f"docs: edit {index}\n", {"README": f"{index}\n"}, when)
        else:
            raise ValueError(kind)
        if kind != "app":
            written.shas.append(stream.sha(mark) if kind != "other" or index == len(events) - 1
                                else "")
        else:
            written.shas.append(source)
        if kind in ("suspend", "resume"):
            standing = written.shas[-1] if kind == "suspend" else "none"
    if events:
        written.tip = written.shas[-1]
    stream.close()
    return written


def _source_of(events: list[tuple], deploy_index: int) -> int | None:
    """The index of the app event a deploy event deployed."""
    for i in range(deploy_index - 1, -1, -1):
        if events[i][0] == "app":
            return i
    return None


def busy_year(commits: int, *, rollback_every: int = 40) -> list[tuple]:
    """About `commits` events: a suspend and resume early, then app commit, deploy frontend,
    deploy backend, over and over (two thirds deploys), and every `rollback_every` releases
    a rollback of the release just deployed. Ends on a live release."""
    events: list[tuple] = [("app",), ("deploy", "frontend"), ("deploy", "backend"),
                           ("suspend",), ("resume",)]
    release = 0
    while len(events) + 3 < commits:
        events += [("app",), ("deploy", "frontend"), ("deploy", "backend")]
        release += 1
        if release % rollback_every == 0 and len(events) + 4 < commits:
            n = len(events)
            events.append(("rollback", [n - 2, n - 1]))
    while len(events) < commits - 3:
        events.append(("other",))
    events += [("app",), ("deploy", "frontend"), ("deploy", "backend")]
    return events
