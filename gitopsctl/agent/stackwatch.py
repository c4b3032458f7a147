"""The compose stack of one VM target as the agent judges it, and a watch of it during `up`.

`docker compose up --wait` notices a container of the new release that exits at once, or
that restart: unless-stopped brings back over and over, only when its own polling sees
it in the wrong state at the right moment: about a second and a half, measured
(benchmarks/pipeline.py, figure 4). Nor does it return the moment the new containers are
healthy. The engine's state is there for anyone to read, so while compose runs the
agent looks itself (`UpWatch`): it ends `up` at the first container of the new image
that failed, and it says when every new container is ready, so that the healthy
samples can start while compose is still in its own wait. The verdict is the samples'
and compose's together, with the logs as evidence, as always.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from gitopsctl.errors import ExternalError

LOOK_EVERY = 0.2


@dataclass
class Stack:
    """What one look at the stack needs, read once per sync."""

    client: Any
    project: str
    in_file: dict[str, str]
    rules: list
    expected: dict
    watch_client: Any   # UpWatch's own: the docker SDK's client is one per thread

    def close(self) -> None:
        self.client.close()
        self.watch_client.close()


def open_stack(cfg: Any, name: str, compose: Any, clients: Any) -> Stack:
    """The engine client, the compose file's services, the rules and the expected images."""
    from gitopsctl import compose as compose_mod
    from gitopsctl import composehealth

    in_file = compose.services()
    rules = composehealth.rules_for(cfg, name, list(in_file))
    clients.wait("docker")  # agent.converge.clients
    import docker
    import docker.errors

    try:
        client = docker.from_env(environment=dict(compose.environ), timeout=60)
        client.ping()
    except docker.errors.DockerException as exc:
        raise ExternalError(f"cannot reach the Docker engine: {exc}",
                            hint="is dockerd running, and DOCKER_HOST right for this user?") from None
    try:
        judged = {c: in_file[c] for c in composehealth.owned(rules)}
        expected = compose_mod.expected_images(client, judged)
        watch_client = docker.from_env(environment=dict(compose.environ), timeout=60)
    except BaseException:
        client.close()
        raise
    return Stack(client, compose.project, in_file, rules, expected, watch_client)


class UpWatch:
    """`stop` for Compose.up, asked from compose's thread, looking at most every LOOK_EVERY s.

    It says to stop once a container running the image the compose file now asks for is
    exited, dead, restarting, unhealthy or restarted since the first look, or once the
    caller gave up (`give_up`: its own samples already failed). `ready` is set when every
    judged compose service has containers and all of them run the new image and are up
    (healthy, or running without a healthcheck): compose then has nothing left but its wait.

    Only what compose starts during this `up` is judged: containers of other images are
    the old release it is about to replace, and a container as it was at the first look
    (stopped by hand, say, for compose to start again) is compose's to deal with until
    it is started again.
    """

    def __init__(self, stack: Stack):
        self.stack = stack
        self.ready = threading.Event()
        self._gave_up: str | None = None
        self._next = 0.0
        self._first: dict[str, tuple[str, int]] | None = None  # name -> (started_at, restarts)

    def give_up(self, why: str) -> None:
        self._gave_up = why

    def __call__(self) -> str | None:
        from gitopsctl import compose as compose_mod
        from gitopsctl.composehealth import container_failure, container_up

        if self._gave_up is not None:
            return self._gave_up
        now = time.monotonic()
        if now < self._next:
            return None
        self._next = now + LOOK_EVERY
        try:
            looks = compose_mod.look_at(self.stack.watch_client, self.stack.project)
        except ExternalError:
            return None  # compose's own wait, and the look after it, will say
        if self._first is None:
            self._first = {look.name: (look.started_at, look.restart_count) for look in looks}
            return None
        up: dict[str, list[bool]] = {}
        for look in looks:
            expected = self.stack.expected.get(look.service)
            if expected is None or not (expected.digest or expected.image_id) \
                    or not expected.matches(look):
                up.setdefault(look.service, []).append(False)
                continue
            started_at, restarts = self._first.get(look.name, ("", 0))
            if look.name in self._first and look.started_at == started_at:
                up.setdefault(look.service, []).append(False)
                continue  # not (re)started by this `up` yet
            if container_failure(look, restarts) is not None:
                return (f"stopped waiting: compose service {look.service}'s new container "
                        f"failed ({look.describe()})")
            up.setdefault(look.service, []).append(container_up(look))
        if self.stack.expected and all(all(up.get(c) or [False]) for c in self.stack.expected):
            self.ready.set()
        return None
