"""Pure Flux rules: revisions, reconcile tokens, verdicts on GitRepository and Kustomization."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from gitopsctl import flux

SHA = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"
shas = st.text("0123456789abcdef", min_size=40, max_size=40)
refs = st.text(st.characters(codec="ascii", exclude_characters="\n\r"), min_size=0, max_size=30)


@given(refs, shas)
def test_revision_round_trips_whatever_the_ref_contains(ref, sha):
    parsed = flux.parse_revision(f"{ref}@sha1:{sha}")
    assert parsed is not None
    assert (parsed.name, parsed.digest) == (ref, f"sha1:{sha}")
    assert flux.revision_is(f"{ref}@sha1:{sha}", sha)


def test_revision_split_is_on_the_last_at():
    assert flux.parse_revision(f"feature@x@sha1:{SHA}") == flux.Revision("feature@x", f"sha1:{SHA}")
    assert flux.parse_revision(f"sha1:{SHA}") == flux.Revision("", f"sha1:{SHA}")
    assert flux.parse_revision(f"main/{SHA}") == flux.Revision("main", f"sha1:{SHA}")  # pre-2.0 format
    assert flux.parse_revision("v1.2.3@sha256:" + "a" * 64).algorithm == "sha256"
    for bad in ("", "main", "main@", "main@sha1:xyz", "@", None, 42):
        assert flux.parse_revision(bad) is None


@given(shas, shas)
def test_revision_is_only_true_for_that_commit(a, b):
    assert flux.revision_is(flux.git_revision("main", a), b) == (a == b)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1),
                    timezones=st.just(timezone.utc)))
def test_request_token_is_rfc3339nano_utc(moment):
    token = flux.request_token(moment)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z", token), token
    assert datetime.fromisoformat(token.replace("Z", "+00:00")) == moment


def test_request_token_changes_between_calls_and_is_utc_for_other_zones():
    plus2 = timezone(timedelta(hours=2))
    assert flux.request_token(datetime(2026, 1, 2, 5, 0, 0, 120000, tzinfo=plus2)) == "2026-01-02T03:00:00.12Z"
    assert flux.request_token(datetime(2026, 1, 2, 3, 0, 0, tzinfo=timezone.utc)) == "2026-01-02T03:00:00Z"


def _obj(*, handled=None, suspend=False, conditions=(), **status):
    st_ = dict(status)
    if handled:
        st_["lastHandledReconcileAt"] = handled
    st_["conditions"] = [{"type": t, "status": s, "reason": r, "message": m} for t, s, r, m in conditions]
    return {"metadata": {"generation": 1}, "spec": {"suspend": suspend}, "status": st_}


def test_source_verdicts():
    rev = flux.git_revision("main", SHA)
    ready = ("Ready", "True", "Succeeded", f"stored artifact for revision '{rev}'")
    assert flux.source_verdict(_obj(conditions=[ready], artifact={"revision": rev}), "t1", SHA).state == "pending"
    assert flux.source_verdict(_obj(handled="t1", conditions=[ready], artifact={"revision": rev}),
                               "t1", SHA).state == "applied"
    other = flux.source_verdict(_obj(handled="t1", conditions=[ready],
                                     artifact={"revision": flux.git_revision("main", OTHER)}), "t1", SHA)
    assert (other.state, other.reason) == ("pending", "OtherRevision")
    failed = flux.source_verdict(_obj(handled="t1", conditions=[("Ready", "False", "GitOperationFailed", "auth")]),
                                 "t1", SHA)
    assert (failed.state, failed.reason, failed.message) == ("failed", "GitOperationFailed", "auth")
    assert flux.source_verdict(_obj(suspend=True), "t1", SHA).reason == "Suspended"


def test_kustomization_verdicts():
    rev, old = flux.git_revision("main", SHA), flux.git_revision("main", OTHER)
    ok = ("Ready", "True", "ReconciliationSucceeded", f"Applied revision: {rev}")
    applied = _obj(handled="t", conditions=[ok], lastAppliedRevision=rev, lastAttemptedRevision=rev)
    assert flux.kustomization_verdict(applied, "t", SHA).state == "applied"
    # Ready at the old revision after our request was handled is not success.
    stale = _obj(handled="t", conditions=[("Ready", "True", "ReconciliationSucceeded", "")],
                 lastAppliedRevision=old, lastAttemptedRevision=old)
    assert flux.kustomization_verdict(stale, "t", SHA).state == "pending"
    build = _obj(handled="t", conditions=[("Ready", "False", "BuildFailed", "kustomize build failed: x")],
                 lastAppliedRevision=old, lastAttemptedRevision=rev)
    assert flux.kustomization_verdict(build, "t", SHA) == flux.Verdict("failed", "BuildFailed",
                                                                       "kustomize build failed: x")
    # A failure of an older attempt says nothing about ours.
    older_failure = _obj(conditions=[("Ready", "False", "HealthCheckFailed", "timeout")],
                         lastAttemptedRevision=old)
    assert flux.kustomization_verdict(older_failure, "t", SHA).state == "pending"
    checking = _obj(handled="t", lastAttemptedRevision=rev, lastAppliedRevision=old, conditions=[
        ("Ready", "Unknown", "Progressing", "Running health checks"),
        ("Reconciling", "True", "Progressing", f"Running health checks for revision {rev} with a timeout of 5m0s")])
    assert flux.kustomization_verdict(checking, "t", SHA).state == "checking"
    assert flux.kustomization_verdict(_obj(suspend=True), "t", SHA).state == "failed"
