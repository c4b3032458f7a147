"""The deploy workflow's shape: the properties the pipeline's safety rests on.

Fast and offline (no services): the e2e tests next to this one run the file for real.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from ruamel.yaml import YAML

from gitopsctl.config import Author, Git

from .actrun import ACT, REPO_ROOT, RUNNER_LABEL, WORKFLOW

PATH = REPO_ROOT / WORKFLOW
ACTIONS = REPO_ROOT / ".gitea" / "actions"
SETUP_ACTION = "./.gitea/actions/setup-gitopsctl"


@pytest.fixture(scope="module")
def workflow() -> dict:
    # YAML 1.2, as Gitea and act read it: the key `on` is a string, not a boolean
    return YAML(typ="safe").load(PATH.read_text())


def _steps(workflow: dict, job: str) -> dict[str, dict]:
    return {step["name"].split(" $")[0]: step for step in workflow["jobs"][job]["steps"]}


def _actions() -> dict[str, dict]:
    return {f"./.gitea/actions/{path.parent.name}": YAML(typ="safe").load(path.read_text())
            for path in sorted(ACTIONS.glob("*/action.yml"))}


def _walk(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def test_act_accepts_it_under_the_strict_schema(tmp_path):
    proc = subprocess.run([str(ACT), "--validate", "--strict", "-W", str(PATH)],
                          cwd=tmp_path, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert proc.returncode == 0 and "Error" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_push_to_main_runs_test_then_deploy_on_the_host_runner(workflow):
    assert workflow["on"] == {"push": {"branches": ["main"]}}
    jobs = workflow["jobs"]
    assert list(jobs) == ["test", "deploy"]
    assert jobs["deploy"]["needs"] == "test"
    assert {job["runs-on"] for job in jobs.values()} == {RUNNER_LABEL}
    assert list(_steps(workflow, "test")) == ["Check out", "Set up gitopsctl", "Test"]
    assert list(_steps(workflow, "deploy")) == [
        "Check out", "Set up gitopsctl", "Write credentials", "Build images",
        "Stage frontend, then backend (rolls back on failure)", "Deploy summary",
        "Forget credentials"]
    assert "--source \"$GITHUB_SHA\"" in _steps(workflow, "deploy")["Build images"]["run"]


def test_git_never_waits_for_a_password(workflow):
    assert workflow["env"]["GIT_TERMINAL_PROMPT"] == "0"


def test_one_deploy_at_a_time_and_never_cancelled(workflow):
    concurrency = workflow["jobs"]["deploy"]["concurrency"]
    assert concurrency["cancel-in-progress"] is False
    # one group per repository, not per commit or run: every deploy waits for the last
    assert concurrency["group"] == "gitopsctl-deploy-${{ github.repository }}"


def test_nothing_is_fetched_from_the_internet(workflow):
    """Every `uses:` is a composite action in this repository, which uses nothing itself."""
    uses = [value for key, value in _walk(workflow) if key == "uses"]
    actions = _actions()
    assert uses and set(uses) <= set(actions), uses
    for name, action in actions.items():
        assert action["runs"]["using"] == "composite", name
        assert not [value for key, value in _walk(action) if key == "uses"], name


def test_every_job_sets_up_gitopsctl_through_the_one_action(workflow):
    for job in ("test", "deploy"):
        setup = _steps(workflow, job)["Set up gitopsctl"]
        assert setup["uses"] == SETUP_ACTION
        assert setup["with"] == {"install": "${{ vars.GITOPSCTL_INSTALL }}",
                                 "python": "${{ vars.GITOPSCTL_CI_PYTHON }}"}
    inputs = _actions()[SETUP_ACTION]["inputs"]
    assert set(inputs) == {"install", "python"}
    assert all(i["required"] is False and i["default"] == "" for i in inputs.values())


def test_no_step_is_copied_between_jobs(workflow):
    """A step's work is written once: in the job that needs it, or in the local action.
    Both jobs need the checkout before the local action exists (a job reads it from its own
    workspace): the file defines that step once, and the deploy job names it (an alias)."""
    test, deploy = workflow["jobs"]["test"]["steps"], workflow["jobs"]["deploy"]["steps"]
    assert test[0] == deploy[0] and test[0]["name"].startswith("Check out")
    text = (REPO_ROOT / WORKFLOW).read_text()
    root = yaml.compose(text)
    jobs = next(v for k, v in root.value if k.value == "jobs")
    first_steps = [next(v for k, v in job.value if k.value == "steps").value[0]
                   for name, job in jobs.value if name.value in ("test", "deploy")]
    assert first_steps[0] is first_steps[1]  # one node: the alias, not a copy
    assert text.count("git init -q .") == 1
    scripts = [step["run"] for step in test[1:] + deploy[1:] if "run" in step]
    assert len(scripts) == len(set(scripts))
    for step in test[1:]:
        assert step not in deploy or "uses" in step, step["name"]
    # each script line that does work is in one place only (a few lines of the checkout aside)
    lines = [line.strip() for script in scripts for line in script.splitlines()
             if len(line.strip()) > 20 and not line.strip().startswith("#")]
    assert [line for line in set(lines) if lines.count(line) > 1] == []


def test_no_program_is_written_inside_the_yaml(workflow):
    """The summary and the set-up are gitopsctl's and the action's script's: no heredoc, no
    inline interpreter, no script longer than a screen."""
    scripts = [value for key, value in _walk([workflow, *_actions().values()]) if key == "run"]
    for script in scripts:
        assert not re.search(r"<<(?!<)-?\s*['\"]?[A-Za-z_]", script), script  # a heredoc
        assert "python -" not in script and "python3 -" not in script, script
        assert len(script.splitlines()) <= 40, script
    summary = _steps(workflow, "deploy")["Deploy summary"]["run"]
    assert summary.split() == ["gitopsctl", "summary",
                               "--from", '"$GITOPSCTL_RESULTS/build.json"',
                               "--from", '"$GITOPSCTL_RESULTS/stage.json"',
                               "--output-file", '"$GITHUB_STEP_SUMMARY"']


def test_no_expression_is_pasted_into_a_shell_script(workflow):
    """Event data (commit messages, author names) and inputs reach scripts only through env."""
    scripts = [value for key, value in _walk([workflow, *_actions().values()]) if key == "run"]
    assert len(scripts) > len(_actions())
    for script in scripts:
        assert "${{" not in script, script


def test_each_secret_reaches_only_the_steps_that_need_it(workflow):
    used: dict[str, set[str]] = {}
    for job_name, job in workflow["jobs"].items():
        for value in (job.get("env") or {}).values():
            for secret in re.findall(r"secrets\.(\w+)", str(value)):
                used.setdefault(secret, set()).add(f"{job_name}:*")
        for step in job["steps"]:
            for value in (step.get("env") or {}).values():
                for secret in re.findall(r"secrets\.(\w+)", str(value)):
                    used.setdefault(secret, set()).add(f"{job_name}:{step['name'].split(' $')[0]}")
    stage = "Stage frontend, then backend (rolls back on failure)"
    assert used == {
        "GITOPSCTL_GIT_TOKEN": {"test:Check out", "deploy:Check out", "deploy:Write credentials"},
        "HARBOR_USERNAME": {"deploy:*"},
        "HARBOR_PASSWORD": {"deploy:Build images", f"deploy:{stage}"},
        "GITOPSCTL_SSH_KEY": {"deploy:Write credentials"},
        "KUBECONFIG": {"deploy:Write credentials"},
        "GITOPSCTL_KNOWN_HOSTS": {f"deploy:{stage}"},
    }
    assert "secrets." not in str(workflow["env"])


def test_cleanup_and_summary_run_even_after_a_failure(workflow):
    deploy = _steps(workflow, "deploy")
    assert deploy["Forget credentials"]["if"] == "always()"
    assert deploy["Deploy summary"]["if"] == "always() && steps.setup.outcome == 'success'"
    assert deploy["Set up gitopsctl"]["id"] == "setup"


def test_only_the_deploy_job_keeps_credentials_on_disk(workflow):
    """The test job's one credential, the checkout token, lives in the fetch's environment."""
    test_scripts = "\n".join(step.get("run", "") for step in workflow["jobs"]["test"]["steps"])
    assert "RUNNER_TEMP" not in test_scripts and "include.path" not in test_scripts
    checkout = workflow["jobs"]["test"]["steps"][0]["run"]
    assert "GIT_CONFIG_VALUE_0=\"$header\"" in checkout and "git config http" not in checkout
    deploy = _steps(workflow, "deploy")
    assert "include.path" in deploy["Write credentials"]["run"]
    assert "include.path" in deploy["Forget credentials"]["run"]


def test_the_skip_guard_matches_what_gitopsctl_writes(workflow):
    guard = workflow["jobs"]["test"]["if"]
    assert f"vars.GITOPSCTL_SKIP_MARKER || '{Git().skip_marker}'" in guard
    assert guard.count(f"vars.GITOPSCTL_AUTHOR_EMAIL || '{Author().email}'") == 2
    assert "head_commit.author.email" in guard and "head_commit.committer.email" in guard
    # the marker this repository's own config writes is the one the guard checks
    own = YAML(typ="safe").load((REPO_ROOT / "gitopsctl.yaml").read_text())["git"]
    assert own["skip_marker"] == Git().skip_marker
    assert own["author"]["email"] == Author().email
    assert "deploy" not in str(workflow["jobs"]["deploy"].get("if", ""))  # skipped via needs


def test_the_docs_name_every_secret_and_variable(workflow):
    text = PATH.read_text()
    docs = (REPO_ROOT / "docs" / "gitea-pipeline.md").read_text()
    for name in set(re.findall(r"(?:secrets|vars)\.([A-Z_]+)", text)):
        assert f"`{name}`" in docs, name


def test_a_broken_workflow_is_rejected_by_the_same_check(tmp_path):
    """Control for the strict-schema test: it does catch a misspelt key."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(PATH.read_text().replace("timeout-minutes: 60", "timeout_minutes: 60"))
    proc = subprocess.run([str(ACT), "--validate", "--strict", "-W", str(bad)], cwd=tmp_path,
                          env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert "Error" in proc.stdout + proc.stderr
