"""What one lab started, and proof that clean-up removed all of it.

Every process a lab starts (dockerd, registry, sshd) names the lab's work directory on
its command line and every container carries the lab's labels; that is how leftovers
are found, by the sandbox itself and by `down` after a sandbox died without cleaning up.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gitopsctl.sandbox.session import remove_workdir


@dataclass(frozen=True)
class Footprint:
    """How to recognise what one lab started, recorded before it stops."""

    workdir: str
    run_dirs: tuple[str, ...]
    docker_host: str | None
    engine_owned: bool
    labels: tuple[str, ...]          # docker label filters, "key=value"
    image_prefix: str | None         # the lab registry's repositories

    @classmethod
    def of(cls, lab: Any) -> "Footprint":
        from gitopsctl.sandbox.lab.kube.kubelet import LABEL

        engine = lab.engine
        labels = []
        if lab.compose_project:
            labels.append(f"com.docker.compose.project={lab.compose_project}")
        simulator = getattr(lab.kube, "simulator", None) if lab.kube else None
        if simulator is not None:
            labels.append(f"{LABEL}={simulator.sim_id}")
        run_dir = getattr(engine, "run_dir", None) if engine is not None else None
        return cls(workdir=str(lab.workdir), run_dirs=(str(run_dir),) if run_dir else (),
                   docker_host=engine.docker_host if engine is not None else None,
                   engine_owned=bool(getattr(engine, "owned", False)), labels=tuple(labels),
                   image_prefix=f"{lab.registry.url}/" if lab.registry is not None else None)

    def to_dict(self) -> dict:
        return {"workdir": self.workdir, "run_dirs": list(self.run_dirs),
                "docker_host": self.docker_host, "engine_owned": self.engine_owned,
                "labels": list(self.labels), "image_prefix": self.image_prefix}

    @classmethod
    def from_dict(cls, data: dict) -> "Footprint":
        return cls(workdir=str(data["workdir"]), run_dirs=tuple(map(str, data.get("run_dirs", ()))),
                   docker_host=data.get("docker_host"), engine_owned=bool(data.get("engine_owned")),
                   labels=tuple(map(str, data.get("labels", ()))), image_prefix=data.get("image_prefix"))


def remove_lab_images(footprint: Footprint) -> int:
    """On an engine the sandbox only borrowed, delete the images it built or pulled."""
    if footprint.engine_owned or not footprint.docker_host or not footprint.image_prefix:
        return 0
    import docker

    removed = 0
    try:
        client = docker.DockerClient(base_url=footprint.docker_host, timeout=60)
    except Exception:
        return 0
    try:
        for image in client.images.list():
            for tag in image.tags:
                if tag.startswith(footprint.image_prefix):
                    try:
                        client.images.remove(tag, force=True)
                        removed += 1
                    except Exception:  # in use by a container being removed; reported below
                        pass
    finally:
        client.close()
    return removed


def find_leftovers(footprint: Footprint, *, workdir_kept: bool = False) -> list[str]:
    """Anything of this lab still present: processes, containers, images, directories."""
    found = [f"process {pid}: {cmd[:160]}" for pid, cmd in _processes_naming(
        (footprint.workdir, *footprint.run_dirs))]
    if not footprint.engine_owned and footprint.docker_host:
        found.extend(_containers_and_images(footprint))
    dirs = footprint.run_dirs if workdir_kept else (footprint.workdir, *footprint.run_dirs)
    for path in dirs:
        if Path(path).exists() and any(Path(path).iterdir()):
            found.append(f"directory {path}")
    return found


def reap(footprint: Footprint, created: bool, timeout: float = 20.0) -> None:
    """Clean up after a sandbox whose own process died before it could (e.g. SIGKILL)."""
    from gitopsctl.sandbox.lab.dockerd import DockerEngine

    if not footprint.engine_owned and footprint.docker_host:
        _remove_labelled_containers(footprint)
        remove_lab_images(footprint)
    pids = [pid for pid, _ in _processes_naming((footprint.workdir, *footprint.run_dirs))]
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.2)
    for pid in pids:
        if _alive(pid):
            _signal(pid, signal.SIGKILL)
    roots = [Path(p) for p in (footprint.workdir, *footprint.run_dirs)]
    DockerEngine._unmount_under(roots)
    for run_dir in footprint.run_dirs:
        shutil.rmtree(run_dir, ignore_errors=True)
    remove_workdir(Path(footprint.workdir), created)


def _remove_labelled_containers(footprint: Footprint) -> None:
    import docker

    try:
        client = docker.DockerClient(base_url=footprint.docker_host, timeout=60)
    except Exception:
        return
    try:
        for label in footprint.labels:
            for container in client.containers.list(all=True, filters={"label": label}):
                try:
                    container.remove(force=True)
                except Exception:  # already going away
                    pass
    except Exception:
        pass
    finally:
        client.close()


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def _processes_naming(paths: tuple[str, ...]) -> list[tuple[int, str]]:
    me = os.getpid()
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state == "Z" or _is_sandbox_command(cmd):
            continue
        if any(p + "/" in cmd for p in paths):
            out.append((int(entry.name), cmd.strip()))
    return out


def _is_sandbox_command(cmd: str) -> bool:
    """`gitopsctl sandbox up|down --dir DIR/` names the directory but is the user's, not the lab's."""
    words = cmd.split()
    return "gitopsctl" in cmd and "sandbox" in words and bool({"up", "down", "demo"} & set(words))


def _containers_and_images(footprint: Footprint) -> list[str]:
    import docker

    found = []
    try:
        client = docker.DockerClient(base_url=footprint.docker_host, timeout=30)
    except Exception as exc:
        return [f"cannot check the Docker engine for containers: {exc}"]
    try:
        for label in footprint.labels:
            for container in client.containers.list(all=True, filters={"label": label}):
                found.append(f"container {container.name} ({label})")
        if footprint.image_prefix:
            found.extend(f"image {tag}" for image in client.images.list() for tag in image.tags
                         if tag.startswith(footprint.image_prefix))
    except Exception as exc:
        found.append(f"cannot check the Docker engine for containers: {exc}")
    finally:
        client.close()
    return found
