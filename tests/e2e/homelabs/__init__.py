"""Homelabs other than the sandbox's own, for the lab to run (gitopsctl.sandbox.lab.seed).

Each is a directory holding its repository's first tree and the part of its
gitopsctl.yaml that says what runs; the lab adds where it runs on this machine.
"""

from __future__ import annotations

from pathlib import Path

from gitopsctl.sandbox.lab.seed import HomelabSeed

HERE = Path(__file__).resolve().parent


def shop() -> HomelabSeed:
    """web on Kubernetes (Deployment shop/web); api and worker in one compose file on the VM,
    the worker with no HTTP endpoint; stage order [web, [api, worker]]."""
    return HomelabSeed.from_directory(HERE / "shop")
