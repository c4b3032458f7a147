"""The deploy workflow, run for real with act in host mode against the harness.

The checkout step clones the harness git remote; the test job runs its test command;
the deploy job runs `gitopsctl build` against the session's registry (real docker builds
and pushes) and `gitopsctl stage`; `gitopsctl summary` writes the result to the job
summary file and to the log. Two repositories run it: a copy of this one (its own
gitopsctl from the checkout, its own pytest suite) and a homelab repository that adopted
the workflow (gitopsctl installed from a wheel, `gitopsctl check` as its tests).

    good push     stage deploys to a Kubernetes API emulator (Flux following the
                  remote, pods pulling from the registry) and to an sshd "VM" that runs
                  `gitopsctl sync` with docker compose: both end up serving the commit
    failed stage  the same pipeline with no cluster behind the kubeconfig: stage rolls
                  back, the job fails and the summary says why
    red tests     the deploy job never starts
    skips         commits gitopsctl writes start nothing
    adopted       the homelab repository deploys the same way with a pinned gitopsctl,
                  and a failing `gitopsctl check` blocks its deploy
"""

from __future__ import annotations

import dataclasses
import re

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitopsctl.sandbox.lab.gitremote import git

from .actrun import DEVELOPER, FAILING_TEST, ActRun, Pipeline, run_act

pytestmark = pytest.mark.e2e

GITOPSCTL_AUTHOR = ("gitopsctl", "gitopsctl@homelab.lan")


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # loopback only, never through a proxy
    return session


def _tags(registry, repository: str) -> list[str]:
    resp = _session().get(f"{registry.base_url}/v2/{repository}/tags/list",
                          auth=(registry.username, registry.password), timeout=10)
    if resp.status_code == 404:
        return []
    resp.raise_for_status()
    return resp.json().get("tags") or []


def _row(summary: str, first_cell: str) -> list[str]:
    """The cells of the summary table row that starts with `first_cell`."""
    for line in summary.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{summary}")


def _stage_steps(summary: str) -> list[tuple[str, str]]:
    """(step, status) of stage's steps table, each with its time."""
    section = summary.split("\n### stage\n\n", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| (.+?) \| (\w+) \| (\d+\.\d)s \|", section, re.M)
    return [(name, status) for name, status, _ in rows]


def _assert_test_then_deploy(run: ActRun, sha: str, *, installed: bool = False) -> None:
    """The test job ran green, and deploy came after it; both ran the gitopsctl meant: the
    pushed commit's own code in this repository, the installed wheel in a homelab one."""
    why = run.explain()
    assert run.job_result("test") == "success", why
    assert run.started_at("deploy") >= run.finished_at("test"), why
    for job in ("test", "deploy"):
        assert f"checked out {sha} on main" in run.output(job, "Check out"), why
        setup = run.output(job, "Set up")
        if installed:
            assert "pip install gitopsctl[kubernetes] @ file://" in setup, why
            assert re.search(r"gitopsctl-venv/lib/python3\.\d+/site-packages/gitopsctl, run by "
                             r"\S+/gitopsctl-venv/bin/python", setup), why
        else:
            assert "/hostexecutor/gitopsctl, run by" in setup, why
    if installed:
        assert "test command: gitopsctl check" in run.output("test", "Test"), why
        assert re.search(r"checked \d+ YAML file\(s\).*: 0 error\(s\)", run.output("test", "Test")), why
    else:
        assert "1 passed" in run.output("test", "Test"), why


def _assert_build_pushed(run: ActRun, summary: str, registry, sha: str) -> None:
    assert run.step_result("deploy", "Build images") == "success", run.explain()
    for service in ("frontend", "backend"):
        assert sha[:7] in _tags(registry, f"homelab/{service}")
    name, code, meaning, result, seconds = _row(summary, "build")
    assert (code, meaning) == ("0", "success") and re.fullmatch(r"\d+\.\ds", seconds), summary
    for service in ("frontend", "backend"):
        assert f"{registry.url}/homelab/{service}:main-{sha[:7]}-" in result, summary


def _assert_no_secret_in_the_log(run: ActRun, pipeline: Pipeline) -> None:
    secrets = pipeline.secrets
    sensitive = [secrets["HARBOR_PASSWORD"]]
    sensitive += [line for line in secrets["GITOPSCTL_SSH_KEY"].splitlines()
                  if not line.startswith("-----")]
    sensitive += re.findall(r"token: *(\S+)", secrets["KUBECONFIG"])
    sensitive += [secrets[name] for name in ("GITOPSCTL_GIT_TOKEN",) if name in secrets]
    text = run.text()
    for value in sensitive:
        assert value not in text, "a secret reached the log"


def test_a_good_push_deploys_frontend_then_backend(homelab, tmp_path, registry):
    """The whole pipeline for real: test, build, stage to the cluster emulator and the VM."""
    pipeline = homelab.pipeline
    sha = pipeline.commit("frontend+backend: new release",
                          {"examples/frontend/www/release.txt": "2\n"})
    run = run_act(pipeline, sha, tmp_path / "act")
    why = run.explain()
    assert run.returncode == 0, why
    _assert_test_then_deploy(run, sha)
    assert run.job_result("deploy") == "success", why

    # the summary file got the result, and the log shows the same text
    summary = run.summary("deploy")
    assert summary.startswith(f"## gitopsctl deploy of `{sha[:7]}`: deployed\n"), summary
    assert summary.splitlines()[0] in run.output("deploy", "Deploy summary")
    _assert_build_pushed(run, summary, registry, sha)
    assert _row(summary, "stage")[1:4] == ["0", "success", "deployed"], summary
    steps = _stage_steps(summary)
    names = [name for name, _ in steps]
    assert names.index("bump frontend") < names.index("frontend healthy") \
        < names.index("bump backend") < names.index("backend healthy"), summary
    assert all(status in ("ok", "skipped") for _, status in steps), summary

    # git is the record: two deploy commits by gitopsctl, frontend first, both marked
    log = pipeline.remote.log(
        fmt="%H%x00%ae%x00%s%x00%(trailers:key=Gitopsctl-Source,valueonly,separator=%x2C)")
    (d2, d2_author, d2_subject, d2_source), (d1, d1_author, d1_subject, d1_source) = [
        line.split("\x00") for line in log[:2]]
    assert d1_subject.startswith(f"deploy(frontend): {sha[:7]}") and "[skip ci]" in d1_subject
    assert d2_subject.startswith(f"deploy(backend): {sha[:7]}") and "[skip ci]" in d2_subject
    assert d1_author == d2_author == "gitopsctl@homelab.lan"
    assert d1_source.strip() == d2_source.strip() == sha
    assert log[2].startswith(sha)

    # both services now serve the build of this commit
    assert _session().get(f"{homelab.frontend_url}/version", timeout=5).text.strip() == sha
    assert _session().get(f"{homelab.backend_url}/version", timeout=5).text.strip() == sha
    vm_head = (homelab.vm_checkout / ".git" / "HEAD").read_text().strip()
    assert vm_head == d2 or vm_head == "ref: refs/heads/main"
    _assert_no_secret_in_the_log(run, pipeline)

    # the commit gitopsctl pushed last starts no pipeline of its own
    _assert_nothing_ran(run_act(pipeline, d2, tmp_path / "act-d2"))

    # a late run for an older commit (a re-run, a queued run) changes nothing, and is green
    older = log[2].split("\x00")[0]
    assert older == sha
    first = pipeline.remote.log(fmt="%H")[-1]
    late = run_act(pipeline, first, tmp_path / "act-late")
    assert late.returncode == 0 and late.job_result("deploy") == "success", late.explain()
    late_summary = late.summary("deploy")
    assert late_summary.startswith(f"## gitopsctl deploy of `{first[:7]}`: superseded\n"), late_summary
    assert _row(late_summary, "stage")[1:4] == [
        "4", "superseded: a newer deploy is already live, nothing changed", "superseded"], late_summary
    assert pipeline.remote.log(fmt="%H")[0] == d2  # no commit was written
    assert _session().get(f"{homelab.frontend_url}/version", timeout=5).text.strip() == sha


def test_a_failed_stage_fails_the_job_and_the_summary_says_why(pipeline, act_run, registry,
                                                              git_http):
    """No cluster answers the kubeconfig: stage reverts its frontend bump and cannot verify
    the old version either (exit 3). That verdict must decide the job and reach the summary.

    The jobs clone over HTTP with the token secret, and stage's pushes use the same
    credentials: the server refuses anything without it."""
    sha = pipeline.commit("frontend: friendlier greeting",
                          {"examples/frontend/www/greeting.txt": "hello\n"})
    run = act_run(sha)
    why = run.explain()
    _assert_test_then_deploy(run, sha)
    assert run.step_result("deploy", "Stage") == "failure", why
    assert run.job_result("deploy") == "failure" and run.returncode != 0, why

    summary = run.summary("deploy")
    _assert_build_pushed(run, summary, registry, sha)
    assert _row(summary, "stage")[1:3] == ["3", "rollback failed, a human must act"], summary
    assert _row(summary, "stage")[3].startswith("rollback-failed"), summary
    assert summary.startswith(f"## gitopsctl deploy of `{sha[:7]}`: rollback-failed\n"), summary
    assert ("bump frontend", "ok") in _stage_steps(summary), summary
    assert ("rollback", "failed") in _stage_steps(summary), summary
    assert "GitRepository flux-system/flux-system" in summary  # the evidence, from stage's JSON
    assert summary.splitlines()[0] in run.output("deploy", "Deploy summary")
    # git keeps the record: the bump and its revert, both by gitopsctl, both marked
    subjects = pipeline.remote.log(fmt="%s")
    assert subjects[0].startswith(f"rollback: {sha[:7]}") and "[skip ci]" in subjects[0]
    assert subjects[1].startswith(f"deploy(frontend): {sha[:7]}")
    # both jobs fetched and gitopsctl pushed (bump, then revert) over HTTP, never unauthorised
    assert [s for _, _, s in git_http.requests if s != 200] == [], git_http.requests
    paths = [path for _, path, _ in git_http.requests]
    assert paths.count("/remote.git/git-upload-pack") >= 2, git_http.requests
    assert paths.count("/remote.git/git-receive-pack") == 2, git_http.requests
    _assert_no_secret_in_the_log(run, pipeline)


def test_without_the_token_the_checkout_is_refused(pipeline, git_http, tmp_path):
    """Control for the HTTP test above: the server does refuse a wrong token."""
    sha = pipeline.commit("docs: readme", {"README.md": "homelab\n"})
    wrong = dataclasses.replace(pipeline, secrets={**pipeline.secrets,
                                                   "GITOPSCTL_GIT_TOKEN": "not-the-token"})
    run = run_act(wrong, sha, tmp_path / "act")
    assert run.step_result("test", "Check out") == "failure", run.explain()
    assert run.job_result("deploy") == "skipped", run.explain()
    assert ("GET", "/remote.git/info/refs", 401) in git_http.requests


def test_a_failing_test_job_blocks_the_deploy(pipeline, act_run, registry):
    sha = pipeline.commit("backend: refactor", {"tests/test_regression.py": FAILING_TEST})
    run = act_run(sha)
    why = run.explain()
    assert run.returncode != 0, why
    assert run.job_result("test") == "failure", why
    assert "deliberately broken" in run.output("test", "Test"), why
    # never started: nothing built, nothing pushed, no summary
    assert run.job_result("deploy") == "skipped", why
    assert run.steps("deploy") == [], why
    assert run.summary("deploy") == ""
    assert sha[:7] not in _tags(registry, "homelab/frontend")


def _assert_nothing_ran(run) -> None:
    why = run.explain()
    assert run.returncode == 0, why
    assert run.job_result("test") == "skipped", why
    assert run.job_result("deploy") == "skipped", why
    assert run.steps("test") == [] and run.steps("deploy") == [], why


@pytest.mark.parametrize("message, author, committer", [
    # what gitopsctl writes: its marker and its identity
    ("deploy(frontend): 1a2b3c4 → harbor.lan/homelab/frontend:main-1a2b3c4-1 [skip ci]\n\n"
     "Gitopsctl-Source: 1a2b3c4\n", GITOPSCTL_AUTHOR, GITOPSCTL_AUTHOR),
    # the marker alone (a person's commit that asks to skip CI)
    ("docs: typo [skip ci]", DEVELOPER, DEVELOPER),
    # gitopsctl's identity alone, even if a marker were lost
    ("rollback: 1a2b3c4 — frontend CrashLoopBackOff", GITOPSCTL_AUTHOR, GITOPSCTL_AUTHOR),
    # committed by gitopsctl on someone's behalf (a rebased deploy commit)
    ("deploy(backend): 1a2b3c4", DEVELOPER, GITOPSCTL_AUTHOR),
], ids=["gitopsctl-commit", "marker-only", "author-only", "committer-only"])
def test_gitopsctl_commits_never_start_the_pipeline(skip_pipeline, tmp_path, message, author,
                                                    committer):
    sha = skip_pipeline.commit(message, author=author, committer=committer)
    _assert_nothing_ran(run_act(skip_pipeline, sha, tmp_path / "act"))


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=40),
       after=st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=40),
       marker=st.sampled_from(["[skip ci]", "[SKIP CI]", "[Skip Ci]"]))
def test_the_marker_skips_wherever_it_sits_in_the_message(skip_pipeline, tmp_path_factory,
                                                          before, after, marker):
    # contains() in workflow expressions ignores case (Gitea's own pre-run check does not)
    message = f"{before}{marker}{after}".strip() or marker
    sha = skip_pipeline.commit(message)
    _assert_nothing_ran(run_act(skip_pipeline, sha, tmp_path_factory.mktemp("act")))


def test_the_skip_guard_is_not_a_blanket_skip(skip_pipeline: Pipeline, tmp_path):
    """Control for the skip tests: a person's commit does start the test job."""
    sha = skip_pipeline.commit("docs: skip the CI chapter, ci is fine", author=DEVELOPER)
    run = run_act(skip_pipeline, sha, tmp_path / "act")
    # the pipeline's test command is `false`: the job started, and its failure stops the run
    assert run.job_result("test") == "failure", run.explain()
    assert run.step_result("test", "Check out") == "success", run.explain()
    # (not its output: act sometimes drops the log of a step that ends within milliseconds)
    assert run.step_result("test", "Test") == "failure", run.explain()
    assert run.job_result("deploy") == "skipped", run.explain()


def test_a_homelab_repository_deploys_with_a_pinned_gitopsctl(adopted_homelab, tmp_path, registry):
    """The workflow copied into a homelab repository that holds no gitopsctl source: each job
    installs the pinned wheel into its own virtualenv, the test job runs `gitopsctl check`
    (the default test command), and the deploy goes to the cluster emulator and the VM."""
    pipeline = adopted_homelab.pipeline
    tree = pipeline.remote.log(fmt="%H")[0]
    files = git(pipeline.remote.work, "ls-tree", "-r", "--name-only", tree).splitlines()
    assert not [f for f in files if f.startswith(("gitopsctl/", "tests/", "scripts/"))], files
    assert "pyproject.toml" not in files and ".gitea/actions/setup-gitopsctl/action.yml" in files
    sha = pipeline.commit("frontend+backend: new release",
                          {"examples/frontend/www/release.txt": "2\n"})
    run = run_act(pipeline, sha, tmp_path / "act")
    why = run.explain()
    assert run.returncode == 0, why
    _assert_test_then_deploy(run, sha, installed=True)
    assert run.job_result("deploy") == "success", why
    summary = run.summary("deploy")
    assert summary.startswith(f"## gitopsctl deploy of `{sha[:7]}`: deployed\n"), summary
    _assert_build_pushed(run, summary, registry, sha)
    assert _row(summary, "stage")[1:4] == ["0", "success", "deployed"], summary
    subjects = pipeline.remote.log(fmt="%s")
    assert subjects[0].startswith(f"deploy(backend): {sha[:7]}"), subjects
    assert subjects[1].startswith(f"deploy(frontend): {sha[:7]}"), subjects
    assert _session().get(f"{adopted_homelab.frontend_url}/version", timeout=5).text.strip() == sha
    assert _session().get(f"{adopted_homelab.backend_url}/version", timeout=5).text.strip() == sha
    _assert_no_secret_in_the_log(run, pipeline)


def test_a_homelab_whose_check_fails_is_not_deployed(adopted_pipeline, tmp_path, registry):
    """`gitopsctl check` is the homelab's test: a manifest it refuses stops the run there."""
    sha = adopted_pipeline.commit("frontend: scale up", {
        "clusters/homelab/apps/frontend/broken.yaml": "apiVersion: v1\nkind: ConfigMap\n"
                                                       "metadata: {name: [unclosed\n"})
    run = run_act(adopted_pipeline, sha, tmp_path / "act")
    why = run.explain()
    assert run.step_result("test", "Set up") == "success", why
    assert "test command: gitopsctl check" in run.output("test", "Test"), why
    assert "broken.yaml" in run.output("test", "Test"), why
    assert run.job_result("test") == "failure" and run.returncode != 0, why
    assert run.job_result("deploy") == "skipped" and run.steps("deploy") == [], why
    assert sha[:7] not in _tags(registry, "homelab/frontend")


def test_the_test_command_is_the_repository_variable(adopted_pipeline, tmp_path):
    """GITOPSCTL_TEST_COMMAND replaces the default, split into words, never through a shell."""
    sha = adopted_pipeline.commit("ci: own tests")
    run = run_act(adopted_pipeline, sha, tmp_path / "act",
                  variables={"GITOPSCTL_TEST_COMMAND": "gitopsctl check $HOME; true"})
    why = run.explain()
    # check got `$HOME;` and `true` as the paths to check: no expansion, no second command
    output = run.output("test", "Test")
    assert "test command: gitopsctl check $HOME; true" in output, why
    assert "$HOME;: GOC001 error: path does not exist" in output, why
    assert "true: GOC001 error: path does not exist" in output, why
    assert run.step_result("test", "Test") == "failure", why
    assert run.job_result("deploy") == "skipped", why
