"""suspend / resume on a real bare remote: one commit each saying who and why, image
automation paused with deploys, stage refused while suspended, status showing it."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import textwrap

from gitopsctl.commands import Context
from gitopsctl.deploy.stage import stage
from gitopsctl.deploy.status import status
from gitopsctl.deploy.suspension import actor, current, resume, suspend
from gitopsctl.errors import EXIT_OK, EXIT_ROLLED_BACK, EXIT_SUSPENDED

from .conftest import FakeTargets, remote_tip

SERVICES = {"web": "north", "shop": "south", "api": "box"}
KINDS = {"north": "kubernetes", "south": "kubernetes", "box": "vm"}
AUTOMATIONS = {"north": "north-images", "south": "south-images"}


def as_user(lab, **environ) -> Context:
    return Context(repo=lab.work, config_path=lab.work / "gitopsctl.yaml", environ=environ)


def test_suspend_pauses_deploys_and_automation_in_one_commit_and_resume_undoes_it(lab_factory):
    lab = lab_factory(SERVICES, KINDS, [["web", "shop"], ["api"]], automations=AUTOMATIONS)
    source = lab.app_commit("v2")

    paused = suspend(as_user(lab, GITEA_ACTOR="alice", USER="runner"), reason="disk swap on the NAS")

    assert paused.changed and paused.commit == remote_tip(lab)
    [commit] = lab.written(source)
    assert commit["subject"].startswith("chore: suspend deploys — disk swap on the NAS")
    assert commit["trailers"] == ["Gitopsctl-Suspend: disk swap on the NAS",
                                  "Gitopsctl-Suspended-By: alice",
                                  "Gitopsctl-Suspend-Automation: flux-system/north-images",
                                  "Gitopsctl-Suspend-Automation: flux-system/south-images"]
    assert sorted(commit["files"]) == ["flux/north/automation.yaml", "flux/south/automation.yaml"]
    for target in ("north", "south"):
        assert "suspend: true" in lab.file_at_tip(f"flux/{target}/automation.yaml")

    targets = FakeTargets(lab)
    refused = stage(lab.context(), targets, source=source, delay=0, allow_unbuilt=True)

    assert refused.exit_code == EXIT_SUSPENDED == 5 and refused.outcome == "suspended"
    assert remote_tip(lab) == paused.commit  # nothing pushed
    assert targets.of("apply") == [] and targets.of("wait") == []
    assert "suspended by alice" in refused.error["message"]
    assert "disk swap on the NAS" in refused.error["message"]
    assert paused.commit[:7] in refused.error["message"]
    assert "gitopsctl resume" in refused.error["hint"]
    shown = status(lab.context(), FakeTargets(lab), health=False).to_dict()
    assert shown["suspended"] is True and shown["suspension"]["by"] == "alice"
    assert shown["suspension"]["reason"] == "disk swap on the NAS"

    again = suspend(as_user(lab, USER="bob"), reason="twice")
    assert not again.changed and again.exit_code == EXIT_OK and remote_tip(lab) == paused.commit
    assert "already suspended" in again.message and "alice" in again.message

    resumed = resume(as_user(lab, USER="bob"), reason="NAS back")

    assert resumed.changed and resumed.commit == remote_tip(lab)
    last = lab.written(paused.commit)[-1]
    assert last["subject"].startswith("chore: resume deploys")
    assert last["trailers"] == ["Gitopsctl-Resume: NAS back", "Gitopsctl-Resumed-By: bob"]
    for target in ("north", "south"):
        assert "suspend: false" in lab.file_at_tip(f"flux/{target}/automation.yaml")
    assert current(lab.remote.bare, "refs/heads/main") is None
    assert status(lab.context(), FakeTargets(lab), health=False).to_dict()["suspended"] is False

    twice = resume(as_user(lab, USER="bob"))
    assert not twice.changed and "not suspended" in twice.message
    assert remote_tip(lab) == resumed.commit

    done = stage(lab.context(), FakeTargets(lab), source=source, delay=0, allow_unbuilt=True)
    assert done.exit_code == EXIT_OK, done.to_dict()


def test_resume_leaves_alone_an_automation_a_rollback_suspended(lab_factory):
    lab = lab_factory(SERVICES, KINDS, [["web", "shop"], ["api"]], automations=AUTOMATIONS)
    bad = lab.app_commit("v2")
    failed = stage(lab.context(), FakeTargets(lab, {"api": ["unhealthy"]}), source=bad, delay=0,
                   allow_unbuilt=True)
    assert failed.exit_code == EXIT_ROLLED_BACK
    after_rollback = remote_tip(lab)

    paused = suspend(as_user(lab, USER="carol"), reason="investigating")
    resumed = resume(as_user(lab, USER="carol"))

    written = lab.written(after_rollback)
    assert [w["files"] for w in written] == [[], []]  # records only: nothing to switch
    assert paused.automations == [] and resumed.automations == []
    for target in ("north", "south"):  # still held by the rollback until a good stage
        assert "suspend: true" in lab.file_at_tip(f"flux/{target}/automation.yaml")


def test_the_actor_is_the_forges_when_ci_runs_and_the_login_otherwise():
    assert actor({"GITEA_ACTOR": "gitea-user", "GITHUB_ACTOR": "gh", "USER": "runner"}) == "gitea-user"
    assert actor({"GITHUB_ACTOR": "gh", "USER": "runner"}) == "gh"
    assert actor({"USER": "runner"}) == "runner"
    assert actor({"GITHUB_ACTOR": " \n", "LOGNAME": "login"}) == "login"
    assert actor({}) == pwd.getpwuid(os.getuid()).pw_name  # a container without $USER


def test_a_suspend_without_a_reason_is_refused_before_any_commit(lab_factory):
    from gitopsctl.errors import UsageError

    lab = lab_factory({"web": "north"}, {"north": "kubernetes"}, [["web"]])
    before = remote_tip(lab)
    try:
        suspend(as_user(lab, USER="dave"), reason=" \n ")
    except UsageError as exc:
        assert exc.exit_code == 2 and "--reason" in exc.hint
    else:
        raise AssertionError("a blank reason was accepted")
    assert remote_tip(lab) == before


# ---------------------------------------------------------------- through the CLI

def gitopsctl(lab, *args: str, **environ: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GITOPSCTL_", "GITEA_", "GITHUB_"))}
    env.update(environ)
    return subprocess.run([sys.executable, "-m", "gitopsctl", "--no-color", *args], cwd=lab.work,
                          env=env, capture_output=True, text=True, timeout=120)


def test_the_cli_suspends_refuses_a_stage_with_exit_5_and_resumes(lab_factory):
    lab = lab_factory({"web": "north"}, {"north": "kubernetes"}, [["web"]],
                      automations={"north": "north-images"})
    source = lab.app_commit("v2")

    paused = gitopsctl(lab, "-o", "json", "suspend", "--reason", "kernel upgrade",
                       GITHUB_ACTOR="erin")
    assert paused.returncode == 0, paused.stderr
    doc = json.loads(paused.stdout)
    assert doc["ok"] and doc["changed"] and doc["by"] == "erin"
    assert doc["automations"] == ["flux-system/north-images"]

    refused = gitopsctl(lab, "stage", "--source", source, "--allow-unbuilt")
    assert refused.returncode == 5, refused.stdout + refused.stderr
    said = refused.stdout + refused.stderr
    assert "suspended by erin" in said and "kernel upgrade" in said and "gitopsctl resume" in said
    assert remote_tip(lab) == doc["commit"]

    shown = gitopsctl(lab, "-o", "json", "status", "--no-health")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["suspension"]["reason"] == "kernel upgrade"
    assert "deploys are suspended by erin" in shown.stderr

    again = gitopsctl(lab, "suspend", "--reason", "again")
    assert again.returncode == 0 and "already suspended" in again.stdout

    resumed = gitopsctl(lab, "-o", "json", "resume", USER="frank")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["by"] == "frank" and remote_tip(lab) != doc["commit"]
    assert "suspend: false" in lab.file_at_tip("flux/north/automation.yaml")


def test_a_commit_landing_during_the_push_makes_suspend_build_again_on_the_new_tip(lab_factory):
    lab = lab_factory({"web": "north"}, {"north": "kubernetes"}, [["web"]],
                      automations={"north": "north-images"})
    start = remote_tip(lab)
    # Someone else's commit lands while our push is being received: git refuses ours
    # (the ref moved under it), as it does for two pipelines racing.
    hook = lab.remote.bare / "hooks" / "pre-receive"
    hook.write_text(textwrap.dedent("""\
        #!/bin/sh
        [ -e "$GIT_DIR/raced" ] && exit 0
        touch "$GIT_DIR/raced"
        unset GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
        old=$(git rev-parse refs/heads/main)
        new=$(echo "meanwhile: someone else" | GIT_AUTHOR_NAME=x GIT_AUTHOR_EMAIL=x@x \\
              GIT_COMMITTER_NAME=x GIT_COMMITTER_EMAIL=x@x git commit-tree "$old^{tree}" -p "$old")
        git update-ref refs/heads/main "$new" "$old"
        """))
    hook.chmod(0o755)

    paused = suspend(as_user(lab, USER="gina"), reason="race")

    assert paused.changed and paused.push_attempts == 2
    written = lab.written(start)
    assert [w["subject"].split(" — ")[0] for w in written] == ["meanwhile: someone else",
                                                               "chore: suspend deploys"]
    assert written[1]["files"] == ["flux/north/automation.yaml"]
    assert current(lab.remote.bare, "refs/heads/main").commit == paused.commit


def test_a_rollback_while_suspended_keeps_the_automation_suspended_after_resume(lab_factory):
    from gitopsctl.deploy.rollback import rollback

    lab = lab_factory({"web": "north"}, {"north": "kubernetes"}, [["web"]],
                      automations={"north": "north-images"})
    source = lab.app_commit("v2")
    assert stage(lab.context(), FakeTargets(lab), source=source, delay=0,
                 allow_unbuilt=True).exit_code == EXIT_OK
    paused = suspend(as_user(lab, USER="hana"), reason="bad release, investigating")
    assert paused.automations == ["flux-system/north-images"]
    undone = rollback(lab.context(), FakeTargets(lab), reason="login broken")  # still allowed
    assert undone.exit_code == EXIT_ROLLED_BACK and undone.commit == remote_tip(lab)

    resumed = resume(as_user(lab, USER="hana"))

    assert resumed.changed and resumed.automations == []
    assert lab.written(undone.commit)[-1]["files"] == []
    assert "suspend: true" in lab.file_at_tip("flux/north/automation.yaml")
