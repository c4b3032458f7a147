"""Which image a service deploys for a source commit, and whether it may be deployed.

Pipeline bumps (and the stage planner) must never write a reference to an image that
does not exist: Flux would pull it, fail, and the release would be rolled back for a
reason no one can see in git. So the reference comes from, in this order:

  build-record  the record `gitopsctl build` wrote after pushing (tag + digest)
  registry      the registry has <repository>:<sha7> (every build pushes that tag);
                its digest is read back and pinned
  unbuilt       no build record, and the caller passed allow_unbuilt: <repository>:<sha7>
                without a digest, at the caller's own risk (the registry is not asked)

Anything `check` refuses (GOC005: no tag, or the moving tag `latest` without a
digest) is refused here as well, whatever its origin.
"""

from __future__ import annotations

from typing import Mapping

from gitopsctl.errors import ExternalError, GitopsctlError, InputError
from gitopsctl.imageref import ImageReference, parse_reference

ORIGINS = ("build-record", "registry", "unbuilt")


def resolve_image(config, service: str, source: str, *, environ: Mapping[str, str],
                  allow_unbuilt: bool = False, offline: bool = False) -> tuple[ImageReference, str]:
    """The reference to deploy for `service` built from `source` (a full SHA), and its origin.

    `offline` (a dry run, a pre-commit hook) never asks the registry: without a build
    record the answer is the unbuilt reference. Raises InputError (exit 2) with a hint
    when the image cannot be found or is refused.
    """
    config.service(service)  # an unknown service is a config error naming the known ones
    recorded = _from_build_record(config, service, source)
    if recorded is not None:
        return ensure_deployable(recorded, f"the build record of {source[:7]}"), "build-record"
    repository = config.image_repository(service)
    tag = source[:7]
    if offline:
        return ensure_deployable(parse_reference(f"{repository}:{tag}"), "a dry run"), "unbuilt"
    if allow_unbuilt:
        # the caller vouches for it: no registry round-trip (which may be slow or offline)
        return ensure_deployable(parse_reference(f"{repository}:{tag}"), "--allow-unbuilt"), \
            "unbuilt"
    try:
        digest = _registry_digest(config, service, tag, environ)
    except GitopsctlError as exc:
        raise InputError(
            f"no image for {service} at {source[:7]}: no build record, and {exc.message}",
            hint=f"run `gitopsctl build --source {source} --service {service}` first, or pass "
                 "--allow-unbuilt to deploy an image gitopsctl cannot find",
            details={"service": service, "source": source,
                     "repository": repository, "tag": tag}) from None
    ref = parse_reference(f"{repository}:{tag}@{digest}")
    return ensure_deployable(ref, f"registry {config.registry.host}"), "registry"


def ensure_deployable(ref: ImageReference, where: str) -> ImageReference:
    """Refuse what `check` flags as GOC005 unpinned-image."""
    if ref.tag is None and ref.digest is None:
        raise InputError(f"image {ref} (from {where}) has no tag: it means :latest "
                         "(check rule GOC005 unpinned-image)",
                         hint="deploy a build tag like main-<sha7>-<timestamp>, or add "
                              "@sha256:DIGEST")
    if ref.digest is None and ref.tag == "latest":
        raise InputError(f"image {ref} (from {where}) uses the moving tag latest "
                         "(check rule GOC005 unpinned-image)",
                         hint="deploy an immutable build tag or a digest, e.g. "
                              "harbor.lan/homelab/frontend:main-1a2b3c4-1764160000")
    return ref


def _from_build_record(config, service: str, source: str) -> ImageReference | None:
    """The recorded reference; a record that exists but cannot be read is an error."""
    from gitopsctl import buildrecord

    if not buildrecord.record_path(config, source).exists():
        return None
    built = buildrecord.read_record(config, source).images.get(service)
    return parse_reference(built.reference) if built is not None else None


def _registry_digest(config, service: str, tag: str, environ: Mapping[str, str]) -> str:
    """The digest the registry holds for the service's repository at `tag`.

    Raises a GitopsctlError whose message says why not (missing, refused, unreachable).
    """
    from gitopsctl.registry import RegistryClient

    repository = f"{config.registry.project}/{config.service(service).image}"
    client = RegistryClient.for_config(config.registry, environ, timeout=config.timeouts.http)
    try:
        return client.manifest_digest(repository, tag)
    except ExternalError as exc:
        if "HTTP 404" in exc.message:
            raise ExternalError(f"the registry has no {config.registry.host}/{repository}:{tag}") \
                from None
        raise ExternalError(f"the registry could not be asked ({exc.message})") from None
    finally:
        client.close()
