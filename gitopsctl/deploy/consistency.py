"""Consistency: two services that talk to each other agree on what is live.

A pair (config `consistency:`) names the service asked (`from`, e.g. the frontend) and the
one it reaches (`to`, the backend). gitopsctl GETs the pair's URL on the first, which
answers with the version of the second that it reached through its own route; that
version must be the source git says is live on `to`. Health checks judge each service
alone; only this shows that the route between them works and that the two versions
live together are the ones just deployed.

The answer names a version by its first word (or a JSON key, `field:`); a commit SHA of
at least 7 characters that starts the expected one matches. The URL is asked every
second until it matches or the pair's timeout passes: a mismatch can be a moment's
(a backend container just replaced), a route that never answers is not.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from gitopsctl.health import Check, HealthReport, HttpAnswer, fetch_text

_INTERVAL = 1.0
_ANSWERS_KEPT = 5
_SHORTEST_SHA = 7


@dataclass
class PairReport:
    """The verdict on one pair, with the answers that led to it."""

    pair: str
    caller: str
    callee: str
    url: str
    expected: str | None
    ok: bool
    seen: str | None = None
    message: str = ""
    answers: list[str] = field(default_factory=list)
    attempts: int = 0
    elapsed: float = 0.0

    def to_dict(self) -> dict:
        return {"pair": self.pair, "from": self.caller, "to": self.callee, "url": self.url,
                "expected": self.expected, "ok": self.ok, "seen": self.seen,
                "message": self.message, "answers": self.answers, "attempts": self.attempts,
                "elapsed_seconds": round(self.elapsed, 3)}

    def as_check(self) -> Check:
        return Check(f"consistency {self.pair}", self.ok, self.message, list(self.answers))


def version_in(body: str, field_name: str | None) -> str | None:
    """The version an answer names: its first word, or the JSON value at `field_name`."""
    if field_name is None:
        words = body.split()
        return words[0] if words else None
    try:
        value: Any = json.loads(body)
    except ValueError:
        return None
    for key in field_name.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value if isinstance(value, str) and value else None


def names(seen: str, expected: str) -> bool:
    """True when `seen` is the commit `expected`: the whole SHA or a prefix of 7 or more."""
    seen, expected = seen.lower(), expected.lower()
    return seen == expected or (len(seen) >= _SHORTEST_SHA and expected.startswith(seen))


def judge(pair: Any, expected: str | None, *, deadline: float, http_timeout: float,
          once: bool = False, progress: Callable[[str], None] | None = None,
          fetch: Callable[[str, float], HttpAnswer] = fetch_text) -> PairReport:
    """Ask `pair.url` until its answer names `expected`, or `deadline`; once: one answer.

    `expected` None means git knows no gitopsctl deploy of `pair.callee` (a homelab's first
    state): any version named by a 2xx answer passes, and the report says so.
    """
    report = PairReport(pair.label, pair.caller, pair.callee, pair.url, expected, ok=False)
    started = time.monotonic()
    while True:
        answer = fetch(pair.url, http_timeout)
        report.attempts += 1
        verdict = _verdict(pair, expected, answer)
        report.seen, report.message = verdict[1], verdict[2]
        report.answers = (report.answers + [_shown(answer)])[-_ANSWERS_KEPT:]
        left = deadline - time.monotonic()
        if verdict[0] or once or left <= 0:
            report.ok = verdict[0]
            break
        if progress is not None:
            progress(f"{pair.label}: {report.message}; asking again ({left:.0f}s left)")
        time.sleep(min(_INTERVAL, left))  # the last question is asked at the deadline
    report.elapsed = time.monotonic() - started
    return report


def _verdict(pair: Any, expected: str | None, answer: HttpAnswer) -> tuple[bool, str | None, str]:
    if answer.status is None:
        return False, None, f"{pair.url} does not answer ({answer.error}): the route from " \
                            f"{pair.caller} to {pair.callee} cannot be judged"
    first_line = answer.body.splitlines()[0][:160] if answer.body else ""
    if not 200 <= answer.status < 300:
        return False, None, (f"{pair.caller} cannot reach {pair.callee}: {pair.url} answered "
                             f"HTTP {answer.status}" + (f" ({first_line})" if first_line else ""))
    seen = version_in(answer.body, pair.field_name)
    if seen is None:
        where = f"no string at `{pair.field_name}`" if pair.field_name else "an empty body"
        return False, None, f"{pair.url} answered HTTP {answer.status} with {where}: no version of " \
                            f"{pair.callee} in it"
    if expected is None:
        return True, seen, (f"{pair.caller} reaches {pair.callee} {seen[:40]} (git records no "
                            f"deploy of {pair.callee} to compare it with)")
    if names(seen, expected):
        return True, seen, f"{pair.caller} reaches {pair.callee} {expected[:7]}, the source live in git"
    return False, seen, (f"{pair.caller} reaches {pair.callee} {seen[:40]!r}, not {expected[:7]} "
                         "that git says is live")


def _shown(answer: HttpAnswer) -> str:
    if answer.status is None:
        return f"{answer.url}: {answer.error}"
    body = answer.body.splitlines()[0][:160] if answer.body else ""
    return f"{answer.url}: HTTP {answer.status} {body}".rstrip()


def pairs_touching(config: Any, services: Sequence[str]) -> list[Any]:
    """The configured pairs with either side among `services`, in config order."""
    chosen = set(services)
    return [p for p in config.consistency if p.caller in chosen or p.callee in chosen]


def judge_pairs(config: Any, pairs: Sequence[Any], expected: Mapping[str, str | None], *,
                deadline: float | None = None, once: bool = False,
                progress: Callable[[str], None] | None = None) -> list[PairReport]:
    """Every pair judged against `expected` (service -> source), each within its own timeout
    and never past `deadline`."""
    reports = []
    for pair in pairs:
        end = time.monotonic() + pair.timeout
        if deadline is not None:
            end = min(end, deadline)
        reports.append(judge(pair, expected.get(pair.callee), deadline=end,
                             http_timeout=config.timeouts.http, once=once, progress=progress))
    return reports


def judge_live(config: Any, state: Any, pairs: Sequence[Any], *, once: bool = False,
               progress: Callable[[str], None] | None = None) -> list[PairReport]:
    """The pairs judged against what git says is live (a DeployState): each `to` service
    must be reached at the source of its live deploy (verify, status, after a rollback)."""
    expected = {}
    for callee in {p.callee for p in pairs}:
        live = state.live(callee)
        expected[callee] = live.source if live else None
    return judge_pairs(config, pairs, expected, once=once, progress=progress)


def as_report(report: PairReport) -> HealthReport:
    """A failed pair as the health report of the service asked, for the rollback's record."""
    return HealthReport(target=report.caller, healthy=report.ok,
                        reason=f"{report.pair}: {report.message}", checks=[report.as_check()],
                        elapsed=report.elapsed, details={"consistency": report.to_dict()})
