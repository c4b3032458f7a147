"""Flux's source-controller for GitRepository, played against the emulator's store
(fluxcd/source-controller internal/controller/gitrepository_controller.go): on a reconcile
request, a generation change or when its interval is up, read the branch tip from the git
remote (a real repository on disk) and publish `status.artifact.revision` =
`<branch>@sha1:<sha>`."""

from __future__ import annotations

import time
from typing import Any

from gitopsctl.sandbox.lab.kube.controllers import set_condition
from gitopsctl.sandbox.lab.kube.fluxstatus import REQUESTED_AT, drop_condition, git, go_duration, local_repo, set_ready
from gitopsctl.sandbox.lab.kube.store import GIT_REPOSITORIES, Store, now_rfc3339


class SourceController:
    def __init__(self, store: Store):
        self.store = store
        self._next: dict[tuple[str, str], float] = {}
        # observedGeneration moves only on success, so the generation last acted on is kept here
        # (else a failing repository would be fetched on every pass).
        self._generation: dict[tuple[str, str], Any] = {}

    def tick(self) -> None:
        repos, _ = self.store.list(GIT_REPOSITORIES)
        now = time.monotonic()
        for repo in repos:
            meta, spec = repo["metadata"], repo.get("spec") or {}
            key = (meta["namespace"], meta["name"])
            if spec.get("suspend"):
                continue
            st = repo.get("status") or {}
            requested = (meta.get("annotations") or {}).get(REQUESTED_AT)
            due = (now >= self._next.get(key, 0) or (requested and requested != st.get("lastHandledReconcileAt"))
                   or self._generation.get(key) != meta.get("generation"))
            if not due:
                continue
            self._generation[key] = meta.get("generation")
            self._next[key] = now + go_duration(spec.get("interval"), 60)
            branch = (spec.get("ref") or {}).get("branch") or "master"
            try:
                out = git("ls-remote", local_repo(spec.get("url", "")), f"refs/heads/{branch}")
                if not out:
                    raise RuntimeError(f"couldn't find remote ref 'refs/heads/{branch}'")
                sha = out.split()[0]
                revision = f"{branch}@sha1:{sha}"
                error = None
            except RuntimeError as exc:
                revision, error = None, str(exc)

            def change(obj: dict, revision=revision, error=error, requested=requested,
                       gen=meta.get("generation", 1)) -> None:
                status = obj.setdefault("status", {})
                if requested:
                    status["lastHandledReconcileAt"] = requested
                conditions = status.setdefault("conditions", [])
                if error is not None:
                    message = f"failed to checkout and determine revision: {error}"
                    set_condition(conditions, "FetchFailed", "True", "GitOperationFailed", message,
                                  observedGeneration=gen)
                    set_condition(conditions, "Reconciling", "True", "ProgressingWithRetry",
                                  "reconciliation in progress", observedGeneration=gen)
                    set_ready(status, "False", "GitOperationFailed", message, gen)
                    return
                status["observedGeneration"] = gen
                drop_condition(status, "FetchFailed")
                drop_condition(status, "Reconciling")
                artifact = status.get("artifact") or {}
                if artifact.get("revision") != revision:
                    status["artifact"] = {"revision": revision, "digest": f"sha256:{sha}{'0' * 24}",
                                          "path": f"gitrepository/{obj['metadata']['namespace']}/"
                                                  f"{obj['metadata']['name']}/{sha}.tar.gz",
                                          "url": "", "lastUpdateTime": now_rfc3339()}
                set_condition(status["conditions"], "ArtifactInStorage", "True", "Succeeded",
                              f"stored artifact for revision '{revision}'", observedGeneration=gen)
                set_ready(status, "True", "Succeeded", f"stored artifact for revision '{revision}'", gen)

            self.store.mutate(GIT_REPOSITORIES, meta["namespace"], meta["name"], change)
