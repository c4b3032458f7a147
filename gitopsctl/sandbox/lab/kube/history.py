"""ControllerRevisions: the template history StatefulSets and DaemonSets keep, and its hashes.

Follows kubernetes/kubernetes pkg/controller/history/controller_history.go (a revision's name
is `<owner>-<hash>`, the hash FNV-32 of its data, encoded with k8s.io/apimachinery
pkg/util/rand SafeEncodeString; equal data is found by comparing the data; a rollback to an
old template gives that revision the next number instead of making a new one) and the
owners' getPatch (the data is the pod template, as a strategic merge patch that replaces it).
"""

from __future__ import annotations

import json

from gitopsctl.sandbox.lab.kube.store import CONTROLLER_REVISIONS, Store, StoreError

HASH_LABEL = "controller-revision-hash"
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # rand.SafeEncodeString: no vowels, no 0/1/3


def fnv32(data: bytes) -> int:
    """FNV-1 (not 1a), what Go's hash/fnv New32 computes."""
    value = 0x811C9DC5
    for byte in data:
        value = (value * 0x01000193) & 0xFFFFFFFF
        value ^= byte
    return value


def safe_encode(text: str) -> str:
    return "".join(_SAFE_ALPHABET[ord(ch) % len(_SAFE_ALPHABET)] for ch in text)


def revision_data(template: dict) -> dict:
    return {"spec": {"template": {**json.loads(json.dumps(template)), "$patch": "replace"}}}


def revision_hash(data: dict, collisions: int = 0) -> str:
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return safe_encode(str(fnv32(raw + (str(collisions).encode() if collisions else b""))))


def revision_number(revision: dict) -> int:
    return int(revision.get("revision") or 0)


def owned_revisions(store: Store, owner: dict) -> list[dict]:
    """The owner's revisions, oldest first (SortControllerRevisions)."""
    uid = owner["metadata"]["uid"]
    items, _ = store.list(CONTROLLER_REVISIONS, owner["metadata"]["namespace"])
    mine = [r for r in items if any(ref.get("uid") == uid for ref in r["metadata"].get("ownerReferences") or [])]
    return sorted(mine, key=lambda r: (revision_number(r), r["metadata"]["creationTimestamp"], r["metadata"]["name"]))


def update_revision(store: Store, owner: dict, owner_ref: dict, selector_labels: dict) -> tuple[dict, list[dict]]:
    """The revision of the owner's current template, made or renumbered as the controllers do;
    and the owner's revisions, oldest first, with it among them."""
    template = (owner.get("spec") or {}).get("template") or {}
    data = revision_data(template)
    revisions = owned_revisions(store, owner)
    next_number = revision_number(revisions[-1]) + 1 if revisions else 1
    equal = [r for r in revisions if r.get("data") == data]
    if equal and equal[-1]["metadata"]["name"] == revisions[-1]["metadata"]["name"]:
        return revisions[-1], revisions
    if equal:
        # An older template again (a rollback): that revision becomes the newest.
        found = equal[-1]
        renumbered = store.mutate(CONTROLLER_REVISIONS, found["metadata"]["namespace"], found["metadata"]["name"],
                                  lambda r: r.update(revision=next_number)) or found
        return renumbered, owned_revisions(store, owner)
    ns, name = owner["metadata"]["namespace"], owner["metadata"]["name"]
    collisions = int((owner.get("status") or {}).get("collisionCount") or 0)
    for probe in range(collisions, collisions + 5):  # bounded: a real clash is one in 2**32
        hash_ = revision_hash(data, probe)
        revision = {"metadata": {"name": f"{name[:223]}-{hash_}", "namespace": ns,
                                 "labels": {**selector_labels, HASH_LABEL: hash_},
                                 "ownerReferences": [owner_ref]},
                    "data": data, "revision": next_number}
        try:
            created = store.create(CONTROLLER_REVISIONS, revision)
        except StoreError:
            clash = store.find(CONTROLLER_REVISIONS, ns, revision["metadata"]["name"])
            if clash is not None and clash.get("data") == data:
                created = clash
            else:
                continue
        return created, owned_revisions(store, owner)
    raise RuntimeError(f"no free ControllerRevision name for {ns}/{name}")


def truncate_history(store: Store, revisions: list[dict], live: set[str], limit: int) -> None:
    """Delete the oldest revisions no pod and neither status revision uses, down to `limit`."""
    history = [r for r in revisions if r["metadata"]["name"] not in live]
    for revision in history[: max(0, len(history) - max(limit, 0))]:
        try:
            store.delete(CONTROLLER_REVISIONS, revision["metadata"]["namespace"], revision["metadata"]["name"])
        except StoreError:
            pass
