"""kube-controller-manager's StatefulSet and DaemonSet controllers, as one tickable unit
that the simulator's controller-manager loop runs next to the Deployment and ReplicaSet
controllers."""

from __future__ import annotations

from gitopsctl.sandbox.lab.kube.daemonset import DaemonSetController
from gitopsctl.sandbox.lab.kube.statefulset import StatefulSetController
from gitopsctl.sandbox.lab.kube.store import Store


class WorkloadControllers:
    def __init__(self, store: Store):
        self.store = store
        self.statefulsets = StatefulSetController(store)
        self.daemonsets = DaemonSetController(store)

    def tick(self) -> None:
        self.statefulsets.tick()
        self.daemonsets.tick()
