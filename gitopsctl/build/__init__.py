"""Building: one source commit -> one image per service, pushed, digests known.

  context   the build context as committed (git archive through gitopsctl.repo)
  engine    one image built by the Docker engine; build failures explained
  push      one image's tags pushed, bounded retries
  progress  per-layer push progress
  results   ServiceBuild, BuildPlan, BuildResult

1. Resolve the source commit and check every service's context and Dockerfile exist in
   it (input errors, exit 2, before anything is built).
2. Check the registry answers and accepts our credentials (bounded retries).
3. Build all services in parallel with the Docker SDK from the commit's own tree
   (`git archive`), so a dirty working tree never leaks into an image; labels and the
   SOURCE_SHA build arg name the commit.
4. Tag `<repo>:<sha7>` and the sortable tag, push both images in parallel with per-layer
   progress, then read each manifest digest back through the registry's v2 API.
5. Only when every image is pushed and its digest read back is the build record written.
   If any service fails, nothing is recorded and the command fails.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from gitopsctl.build.context import context_tar
from gitopsctl.build.engine import build_image, check_engine
from gitopsctl.build.progress import PushProgress
from gitopsctl.build.push import push_image
from gitopsctl.build.results import BuildPlan, BuildResult, ServiceBuild
from gitopsctl.errors import ExternalError

__all__ = ["BuildPlan", "BuildResult", "ServiceBuild", "run"]


def run(ctx, source: str | None = None, services: list[str] | tuple[str, ...] = ("all",),
        push: bool = True, no_cache: bool = False) -> BuildResult:
    """Build (and by default push) the selected services' images from commit `source`."""
    from gitopsctl import repo as gitrepo
    from gitopsctl.buildrecord import BuildRecord, BuiltImage, write_record
    from gitopsctl.imagetags import image_tags

    started = time.monotonic()
    config = ctx.config
    reporter = ctx.reporter
    names = _select_services(config, services)
    repo_root = Path(config.root or ctx.repo)
    sha = gitrepo.resolve_source(repo_root, source, option="--source")
    commit_time = gitrepo.commit_time(repo_root, sha)
    labels = {"org.opencontainers.image.revision": sha,
              "org.opencontainers.image.created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                time.gmtime(commit_time))}
    source_url = gitrepo.remote_url(repo_root, config.git.remote)
    if source_url:
        labels["org.opencontainers.image.source"] = source_url

    plans = []
    for name in names:
        svc = config.service(name)
        refs = image_tags(config, name, sha, commit_time)
        plans.append(BuildPlan(service=name, repository=config.image_repository(name),
                               tags=tuple(r.tag for r in refs), context=svc.context,
                               dockerfile=svc.dockerfile,
                               context_tar=context_tar(repo_root, config, sha, name, svc)))

    registry = None
    credentials = None
    if push:
        from gitopsctl.registry import RegistryClient

        registry = RegistryClient.for_config(config.registry, ctx.environ)
        credentials = registry.credentials
        reporter.action(f"checking registry {config.registry.host}")
        registry.check()

    check_engine(ctx.environ)
    reporter.action(f"building {', '.join(names)} for {sha[:7]}"
                    + (" (no cache)" if no_cache else ""))
    results = {p.service: ServiceBuild(service=p.service, repository=p.repository,
                                       tags=list(p.tags), context=p.context) for p in plans}
    secrets = [credentials.password] if credentials else []

    def build_one(plan: BuildPlan) -> None:
        build_image(ctx, plan, results[plan.service], sha, labels, no_cache, secrets)

    _run_parallel(build_one, plans)

    if push:
        progress = PushProgress.create(reporter)
        try:
            def push_one(plan: BuildPlan) -> None:
                push_image(ctx, plan, results[plan.service], credentials, progress, secrets)

            _run_parallel(push_one, plans)
        finally:
            progress.close()
        for plan in plans:
            result = results[plan.service]
            path = plan.repository.split("/", 1)[1]
            for tag in plan.tags:
                digest = registry.manifest_digest(path, tag)
                if result.digest and digest != result.digest:
                    raise ExternalError(
                        f"{plan.service}: the registry reports {digest} for {tag} but the "
                        f"push reported {result.digest}",
                        hint="another build may have pushed the same tag; rebuild")
                result.digest = digest
            reporter.success(f"{plan.service}: {result.reference}")
        registry.close()

    record_path = None
    if push:
        record = BuildRecord(source=sha, images={
            name: BuiltImage(service=name, repository=b.repository, tags=tuple(b.tags),
                             digest=b.digest) for name, b in results.items()})
        record_path = str(write_record(config, record))
    return BuildResult(source=sha, pushed=push, images=results, record=record_path,
                       elapsed=time.monotonic() - started)


def _select_services(config, services) -> list[str]:
    wanted = list(services or ["all"])
    if "all" in wanted:
        return list(config.services)
    out = []
    for name in wanted:
        config.service(name)  # ConfigError naming the known services
        if name not in out:
            out.append(name)
    return out


def _run_parallel(fn: Callable[[Any], None], items: list) -> None:
    """Run fn over items in threads; wait for all, then raise the first failure.

    Waiting for every worker means a failing frontend never leaves a backend push
    running behind our back.
    """
    if len(items) == 1:
        fn(items[0])
        return
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        futures = [pool.submit(fn, item) for item in items]
        errors = [f.exception() for f in futures]
    failures = [e for e in errors if e is not None]
    if failures:
        raise failures[0]
