"""What every pod-owning controller does to pods: make one from a template, delete one.

kubernetes/kubernetes pkg/controller/controller_utils.go (GetPodFromTemplate, the
controller reference) and the API server's graceful deletion: a deleted pod gets a
deletionTimestamp and the kubelet stops its containers, then removes it.
"""

from __future__ import annotations

import json
import secrets
import string

from gitopsctl.sandbox.lab.kube.store import PODS, Store, now_rfc3339

_POD_SUFFIX = string.ascii_lowercase + string.digits


def owner_ref(owner: dict) -> dict:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def terminate_pod(store: Store, pod: dict) -> None:
    """Graceful deletion: mark the pod; the kubelet stops its containers and removes it."""
    store.mutate(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"],
                 lambda o: o["metadata"].update(deletionTimestamp=now_rfc3339()))


def new_pod(template: dict, name: str, namespace: str, owner: dict, labels: dict[str, str],
            spec_extra: dict | None = None) -> dict:
    """A pod from a workload's template, with the phase the API server gives a new pod."""
    tmeta = template.get("metadata") or {}
    spec = json.loads(json.dumps(template.get("spec") or {}))
    spec.update(spec_extra or {})
    return {"metadata": {"name": name, "namespace": namespace,
                         "labels": {**(tmeta.get("labels") or {}), **labels},
                         "annotations": dict(tmeta.get("annotations") or {}),
                         "ownerReferences": [owner_ref(owner)]},
            "spec": spec,
            "status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "",
                 "lastTransitionTime": now_rfc3339()}]}}


def random_suffix() -> str:
    """The five characters generateName adds (k8s.io/apiserver names.SimpleNameGenerator)."""
    return "".join(secrets.choice(_POD_SUFFIX) for _ in range(5))
