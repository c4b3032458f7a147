"""The deploy state read on demand answers every query as the full `git log` scan does.

Histories are generated (deploys, rollbacks reverting any set of earlier deploys,
suspends and resumes, trailers written or not, shallow cut-offs) and written into real
repositories with git fast-import; each query is asked of a fresh lazy state, of one
lazy state asked everything in a drawn order, of a state advanced from an older tip,
and of the full scan.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitopsctl import repo as gitrepo
from gitopsctl.deploy.state import DeployState, full_scan_state
from gitopsctl.repo import MissingHistory

from tests.stage.historygen import write_history

SERVICES = ("frontend", "backend")


@st.composite
def histories(draw):
    events: list[tuple] = []
    deploys: list[int] = []
    for _ in range(draw(st.integers(0, 36))):
        kind = draw(st.sampled_from(["app", "deploy", "deploy", "deploy", "rollback", "suspend",
                                     "resume", "other"]))
        if kind == "deploy":
            deploys.append(len(events))
            events.append(("deploy", draw(st.sampled_from(SERVICES))))
        elif kind == "rollback" and deploys:
            events.append(("rollback", draw(st.lists(st.sampled_from(deploys), min_size=1,
                                                     max_size=3, unique=True))))
        elif kind != "rollback":
            events.append((kind,))
    trailers = draw(st.lists(st.booleans(), min_size=len(events), max_size=len(events)))
    depth = draw(st.none() | st.integers(1, len(events) + 1))
    page = draw(st.sampled_from([1, 2, 3, 64]))
    return events, trailers, depth, page


def outcome(state: DeployState, query: tuple):
    name, *args = query
    try:
        return "ok", getattr(state, name)(*args)
    except MissingHistory:
        return "missing", None


def reference(root: Path, tip: str, query: tuple):
    """The answer from one scan of the whole history, pauses as `suspension.current` read
    them before: the newest suspend or resume record decides."""
    if query[0] == "pause":
        newest = next(iter(gitrepo.deploy_log(root, tip, deploys=False, pauses=True)), None)
        return "ok", newest if newest is not None and newest.kind == "suspend" else None
    if query[0] == "recent":
        return "ok", full_scan_state(root, tip).records[:query[1]]
    return ask(full_scan_state(root, tip), query)


def queries(written, events, draw_order) -> list[tuple]:
    sources = [sha for sha, e in zip(written.shas, events) if e[0] == "app"] + ["0" * 40]
    deploy_shas = [sha for sha, e in zip(written.shas, events) if e[0] == "deploy"]
    out: list[tuple] = [("latest_live_source",), ("newest_record",), ("pause",), ("recent", 1),
                        ("recent", 5), ("records",)]
    out += [("live", s) for s in SERVICES]
    out += [("live_of_source", s) for s in sources] + [("rollback_of", s) for s in sources]
    out += [("newer_than", c) for c in deploy_shas[-4:]] + [("is_reverted", c) for c in deploy_shas]
    out += [("previous_live", s, set(deploy_shas[-3:])) for s in SERVICES]
    return draw_order(out)


def ask(state: DeployState, query: tuple):
    if query[0] == "records":  # a property: the whole history
        return "ok", state.records
    return outcome(state, query)


@settings(max_examples=45, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), data=st.data())
def test_lazy_state_answers_as_the_full_scan(history, data):
    events, trailers, depth, page = history
    with tempfile.TemporaryDirectory() as tmp:
        full = Path(tmp, "full.git")
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(full)], check=True)
        written = write_history(full, events, pause_trailers=lambda i: trailers[i])
        root = full
        if depth is not None:
            root = Path(tmp, "shallow.git")
            subprocess.run(["git", "clone", "-q", "--bare", f"--depth={depth}",
                            f"file://{full}", str(root)], check=True, capture_output=True)
        tip = gitrepo.resolve_commit(root, "main")
        order = lambda items: data.draw(st.permutations(items))  # noqa: E731
        asked = queries(written, events, order)
        expected = {repr(q): reference(root, tip, q) for q in asked}
        shared = DeployState(root, tip, page=page)
        for query in asked:
            assert ask(shared, query) == expected[repr(query)], query
            assert ask(DeployState(root, tip, page=page), query) == expected[repr(query)], query
        if depth is None and events:
            older = data.draw(st.sampled_from([s for s in [written.shas[0], *written.shas] if s]))
            before = DeployState(root, older, page=page)
            ask(before, data.draw(st.sampled_from(asked)))  # read some of it first
            moved = before.advance(tip)
            for query in asked:
                assert ask(moved, query) == expected[repr(query)], query
