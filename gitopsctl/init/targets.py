"""The `targets:` section of a proposal: Kubernetes trees and compose VMs."""

from __future__ import annotations

import posixpath
import re

from gitopsctl.init.discover import Discovery
from gitopsctl.init.objects import ComposeFile, FluxKustomization, Ref
from gitopsctl.init.propose import PLACEHOLDER_HOST, PLACEHOLDER_USER, Proposal, name_for

STATE_DIR = ".gitopsctl"


def _ref(ref: Ref) -> dict:
    return {"name": ref.name, "namespace": ref.namespace}


def _ordered(owners: list[FluxKustomization]) -> list[FluxKustomization]:
    """Owners with each after the ones it dependsOn (Flux applies them in that order)."""
    done: list[FluxKustomization] = []
    pending = sorted(owners, key=lambda k: (k.ref.namespace, k.ref.name))
    for _ in range(len(pending) + 1):
        for k in list(pending):
            names = {p.ref for p in pending if p is not k}
            if not any(d in names for d in k.depends_on):
                done.append(k)
                pending.remove(k)
        if not pending:
            break
    return done + pending   # a dependsOn cycle: Flux would not apply those either


def _with_dependencies(found: Discovery, owners: list[FluxKustomization]) -> list[FluxKustomization]:
    """Owners and every Kustomization they dependsOn, transitively: gitopsctl reconciles the
    target's Kustomizations in order, so an owner never waits out Flux's dependency requeue."""
    by_ref = {k.ref: k for k in found.kustomizations}
    out = list(owners)
    for k in out:  # grows while it is walked: each new one's dependencies are added too
        for ref in k.depends_on:
            dependency = by_ref.get(ref)
            if dependency is not None and dependency not in out:
                out.append(dependency)
    return out


def kubernetes(found: Discovery, name: str, owners: list[FluxKustomization], groups: dict,
               proposal: Proposal) -> dict:
    at = ("targets", name)
    doc: dict = {"kind": "kubernetes"}
    proposal.note(at, "kubeconfig: and context: are not set, so $KUBECONFIG (else "
                  "~/.kube/config) and its current context are used; add `context: NAME` to pin "
                  "this cluster's")
    ordered = _ordered(_with_dependencies(found, owners))
    sources = [k.source for k in ordered if k.source_kind == "GitRepository"]
    if sources:
        source = sources[0]
        if len(set(sources)) > 1:
            proposal.note(at + ("git_repository",), "these Kustomizations follow different "
                          f"GitRepositories ({', '.join(map(str, dict.fromkeys(sources)))}); the "
                          "first is reconciled", todo=True)
    else:
        source = Ref("flux-system", "flux-system")
        known = any(g.ref == source for g in found.git_repositories)
        proposal.note(at + ("git_repository",), "no Kustomization applying the marked files was "
                      "found; flux bootstrap names its GitRepository flux-system"
                      + ("" if known else ": set the one Flux follows"), todo=True)
    doc["git_repository"] = _ref(source)
    if ordered:
        doc["kustomizations"] = [_ref(k.ref) for k in ordered]
        where = ", ".join(f"{k.ref.name} ({k.file})" for k in ordered)
        proposal.note(at + ("kustomizations",), f"the Flux Kustomizations that apply the marked "
                      f"files: {where}")
    else:
        doc["kustomizations"] = [_ref(source)]
        proposal.note(at + ("kustomizations",), "set the Flux Kustomization that applies the "
                      "marked files (`flux get kustomizations`)", todo=True)
    automation = _automation(found, source, name, groups)
    if automation is not None:
        doc["image_update_automation"] = _ref(automation.ref)
        proposal.note(at + ("image_update_automation",), f"{automation.file}: it follows the same "
                      "GitRepository; a rollback suspends it so it cannot undo the rollback")
    return doc


def _automation(found: Discovery, source: Ref, target: str, groups: dict):
    candidates = [a for a in found.automations if a.source == source]
    files = [f for g in groups.values() if g.target == target for f in g.files]

    def covers(a) -> bool:
        return any(a.update_path == "." or f.startswith(a.update_path + "/") for f in files)

    candidates.sort(key=lambda a: (not covers(a), a.suspended, a.ref.name))
    return candidates[0] if candidates else None


def _compose_project(compose: ComposeFile, root_name: str) -> str:
    # compose's own default is the directory name, lowercased, other characters dropped
    raw = compose.project or posixpath.basename(posixpath.dirname(compose.file)) or root_name
    return name_for(re.sub(r"[^a-z0-9_-]", "", raw.lower()).replace("_", "-"), "homelab")


def vm(found: Discovery, compose: ComposeFile, name: str, proposal: Proposal) -> dict:
    at = ("targets", name)
    directory = posixpath.dirname(compose.file) or "."
    doc: dict = {"kind": "vm", "host": PLACEHOLDER_HOST}
    proposal.note(at + ("host",), "set the VM's SSH host name or address; its host key must be in "
                  "known_hosts (ssh-keyscan HOST >> ~/.ssh/known_hosts)", todo=True)
    doc["user"] = PLACEHOLDER_USER
    proposal.note(at + ("user",), "set the SSH user that runs docker compose on the VM",
                  todo=True)
    doc["compose_file"] = compose.file
    doc["compose_project"] = _compose_project(compose, found.root.name)
    proposal.note(at + ("compose_project",), "the project the stack runs under now "
                  "(`docker compose ls` on the VM); a new name starts a second copy")
    doc["checkout"] = "/opt/homelab"
    proposal.note(at + ("checkout",), "the VM's clone of this repository, where "
                  "`gitopsctl sync` runs")
    prefix = "" if directory == "." else directory + "/"
    secrets = [s for s in found.sealed_secrets if s.startswith(prefix)
               and posixpath.dirname(s) == directory]
    if secrets:
        env_files = [e for s in compose.services for e in s.env_files
                     if e.startswith(STATE_DIR + "/")]
        doc["env_file"] = env_files[0] if env_files else f"{STATE_DIR}/{name}.env"
        doc["sealed_secrets"] = secrets
        proposal.note(at + ("sealed_secrets",), "found beside the compose file: sync unseals them "
                      "into env_file with unseal_key, the VM's own key"
                      + ("" if env_files else "; make the compose file read env_file"),
                      todo=not env_files)
    return doc


def branch(found: Discovery, targets: dict) -> str | None:
    for target in targets.values():
        if target["kind"] == "kubernetes":
            ref = Ref(target["git_repository"]["namespace"], target["git_repository"]["name"])
            repo = next((g for g in found.git_repositories if g.ref == ref), None)
            if repo is not None and repo.branch:
                return repo.branch
    return None
