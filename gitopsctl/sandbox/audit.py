"""The audit trail: the remote's `git log`, each commit labelled by what it records."""

from __future__ import annotations

from pathlib import Path


def audit_trail(bare: Path, branch: str = "main") -> list[dict]:
    """Every commit on the branch, newest first: app commits, deploys and rollbacks.

    Deploys and rollbacks are recognised by their trailers (the same reading `status`
    uses), so this shows what git itself says happened.
    """
    from gitopsctl import repo as gitrepo
    from gitopsctl.sandbox.lab.gitremote import git

    ref = f"refs/heads/{branch}"
    records = {r.commit: r for r in gitrepo.deploy_log(bare, ref)}
    out = git(bare, "log", "--first-parent", "--format=%H%x1f%ct%x1f%s", ref)
    trail = []
    for line in out.splitlines():
        commit, timestamp, subject = line.split("\x1f", 2)
        record = records.get(commit)
        entry = {"commit": commit, "timestamp": int(timestamp), "subject": subject,
                 "kind": record.kind if record else "commit"}
        if record is not None:
            entry.update({"service": record.service, "source": record.source})
            if record.kind == "rollback":
                entry.update({"reason": record.reason, "reverts": list(record.reverts)})
        trail.append(entry)
    return trail
