"""Our schemas for the Flux and sealed-secrets kinds, used when no CRD manifest is at hand.

No package registry reachable from here ships Flux's CRDs, and kubernetes-validate covers
only built-in kinds. So these are written by us, read from the API types of the Flux 2.9
controllers (source-controller api/v1 gitrepository_types.go, kustomize-controller api/v1
kustomization_types.go, image-reflector-controller api/v1 imagerepository_types.go and
imagepolicy_types.go, image-automation-controller api/v1 imageupdateautomation_types.go and
git.go) and sealed-secrets' CRD. They are PARTIAL: strict (unknown fields refused) for the
kinds this homelab and the emulator use, with the required fields and enums of those types;
the other Flux kinds only have their top level checked. CEL rules and string patterns are not
reproduced. When the repository holds the real CRDs (a `flux bootstrap` commits them in
gotk-components.yaml), kubeschema validates against those instead.

The shape is the CRDs' own (an openAPIV3Schema), so kubeschema treats both alike.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

_S: Schema = {"type": "string"}
_B: Schema = {"type": "boolean"}
_OPEN: Schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _obj(required: tuple[str, ...] = (), **properties: Schema) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def _arr(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def _map(values: Schema = _S) -> Schema:
    return {"type": "object", "additionalProperties": values}


def _enum(*values: str) -> Schema:
    return {"type": "string", "enum": list(values)}


_LOCAL_REF = _obj(("name",), name=_S)
_LABEL_SELECTOR = _obj(matchLabels=_map(), matchExpressions=_arr(
    _obj(("key", "operator"), key=_S, operator=_S, values=_arr(_S))))
_ACCESS_FROM = _obj(("namespaceSelectors",), namespaceSelectors=_arr(_obj(matchLabels=_map())))
_PATCH_TARGET = _obj(annotationSelector=_S, group=_S, kind=_S, labelSelector=_S, name=_S, namespace=_S,
                     version=_S)
_GIT_REF = _obj(branch=_S, commit=_S, name=_S, semver=_S, tag=_S)


def _cross_ref(*kinds: str) -> Schema:
    return _obj(("kind", "name"), apiVersion=_S, kind=_enum(*kinds), name=_S, namespace=_S)


def _kind(spec: Schema) -> Schema:
    return _obj(apiVersion=_S, kind=_S, metadata={"type": "object"}, spec=spec, status=_OPEN)


GIT_REPOSITORY = _kind(_obj(
    ("interval", "url"),
    ignore=_S, include=_arr(_obj(("repository",), fromPath=_S, repository=_LOCAL_REF, toPath=_S)),
    interval=_S, provider=_enum("generic", "aws", "azure", "github"), proxySecretRef=_LOCAL_REF,
    recurseSubmodules=_B, ref=_GIT_REF, secretRef=_LOCAL_REF, serviceAccountName=_S,
    sparseCheckout=_arr(_S), suspend=_B, timeout=_S, url=_S,
    verify=_obj(("secretRef",), mode=_enum("head", "HEAD", "Tag", "TagAndHEAD"), secretRef=_LOCAL_REF)))

KUSTOMIZATION = _kind(_obj(
    ("interval", "prune", "sourceRef"),
    buildMetadata=_arr(_enum("originAnnotations", "transformerAnnotations")),
    commonMetadata=_obj(annotations=_map(), labels=_map()), components=_arr(_S),
    decryption=_obj(("provider",), provider=_enum("sops"), secretRef=_LOCAL_REF, serviceAccountName=_S),
    deletionPolicy=_enum("MirrorPrune", "Delete", "WaitForTermination", "Orphan"),
    dependsOn=_arr(_obj(("name",), name=_S, namespace=_S, readyExpr=_S)), force=_B,
    healthCheckExprs=_arr(_obj(("apiVersion", "current"), apiVersion=_S, current=_S, failed=_S,
                               inProgress=_S, kind=_S)),
    healthChecks=_arr(_obj(("kind", "name"), apiVersion=_S, kind=_S, name=_S, namespace=_S)),
    ignore=_arr(_obj(("paths",), paths=_arr(_S), target=_PATCH_TARGET)), ignoreMissingComponents=_B,
    images=_arr(_obj(("name",), digest=_S, name=_S, newName=_S, newTag=_S)), interval=_S,
    kubeConfig=_obj(configMapRef=_LOCAL_REF, secretRef=_obj(("name",), key=_S, name=_S)),
    namePrefix=_S, nameSuffix=_S, patches=_arr(_obj(("patch",), patch=_S, target=_PATCH_TARGET)), path=_S,
    postBuild=_obj(substitute=_map(), substituteFrom=_arr(_obj(("kind", "name"), kind=_enum("Secret", "ConfigMap"),
                                                              name=_S, optional=_B)),
                   substituteStrategy=_enum("WithVariables", "Always")),
    prune=_B, retryInterval=_S, serviceAccountName=_S,
    sourceRef=_cross_ref("OCIRepository", "GitRepository", "Bucket", "ExternalArtifact"), suspend=_B,
    targetNamespace=_S, timeout=_S, wait=_B))

IMAGE_REPOSITORY = _kind(_obj(
    ("image", "interval"),
    accessFrom=_ACCESS_FROM, certSecretRef=_LOCAL_REF, exclusionList=_arr(_S), image=_S, insecure=_B,
    interval=_S, provider=_enum("generic", "aws", "azure", "gcp"), proxySecretRef=_LOCAL_REF,
    secretRef=_LOCAL_REF, serviceAccountName=_S, suspend=_B, timeout=_S))

_ORDER = _obj(order=_enum("asc", "desc"))
IMAGE_POLICY = _kind(_obj(
    ("imageRepositoryRef", "policy"),
    digestReflectionPolicy=_enum("Always", "IfNotPresent", "Never"), filterTags=_obj(extract=_S, pattern=_S),
    imageRepositoryRef=_obj(("name",), name=_S, namespace=_S), interval=_S,
    policy=_obj(alphabetical=_ORDER, numerical=_ORDER, semver=_obj(("range",), range=_S)), suspend=_B))

IMAGE_UPDATE_AUTOMATION = _kind(_obj(
    ("interval", "sourceRef"),
    git=_obj(("commit",),
             checkout=_obj(("ref",), ref=_GIT_REF),
             commit=_obj(("author",), author=_obj(("email",), email=_S, name=_S), messageTemplate=_S,
                         messageTemplateValues=_map(),
                         signingKey=_obj(("secretRef",), secretRef=_LOCAL_REF, type=_enum("gpg", "ssh"))),
             push=_obj(branch=_S, options=_map(), refspec=_S)),
    interval=_S, policySelector=_LABEL_SELECTOR, sourceRef=_cross_ref("GitRepository"), suspend=_B,
    update=_obj(path=_S, strategy=_enum("Setters"))))

SEALED_SECRET = _kind(_obj(
    ("encryptedData",),
    encryptedData=_map(), data=_OPEN,
    template=_obj(data=_map(), immutable=_B, metadata=_OPEN, type=_S)))

# The rest of Flux 2.9: only the top level is ours to check.
_TOP_LEVEL_ONLY = _kind(_OPEN)

SCHEMAS: dict[tuple[str, str], Schema] = {
    ("source.toolkit.fluxcd.io/v1", "GitRepository"): GIT_REPOSITORY,
    ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"): KUSTOMIZATION,
    ("image.toolkit.fluxcd.io/v1", "ImageRepository"): IMAGE_REPOSITORY,
    ("image.toolkit.fluxcd.io/v1", "ImagePolicy"): IMAGE_POLICY,
    ("image.toolkit.fluxcd.io/v1", "ImageUpdateAutomation"): IMAGE_UPDATE_AUTOMATION,
    ("bitnami.com/v1alpha1", "SealedSecret"): SEALED_SECRET,
}


def schema_for(api_version: str, kind: str) -> Schema | None:
    """Our schema for a served Flux or sealed-secrets kind (top level only for the ones we do
    not model); None for any other kind."""
    from gitopsctl import kubeapis

    found = SCHEMAS.get((api_version, kind))
    if found is not None:
        return found
    resource = kubeapis.lookup(api_version, kind)
    if resource is not None and resource.provider != "kubernetes":
        return _TOP_LEVEL_ONLY
    return None
