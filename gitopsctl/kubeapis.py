"""What a homelab cluster serves: the one table of API groups, versions and kinds.

The cluster is Flux 2.9 (fluxcd/flux2 tag v2.9.4) on Kubernetes 1.33, plus sealed-secrets.

* Flux 2.9: the CRDs named by fluxcd/flux2 `manifests/crds/kustomization.yaml` at v2.9.4, each
  read from its controller's `config/crd/bases/*.yaml` (the versions marked `served: true`):
  source-controller v1.9 (source.toolkit.fluxcd.io/v1), kustomize-controller v1.9
  (kustomize.toolkit.fluxcd.io/v1), helm-controller v1.6 (helm.toolkit.fluxcd.io/v2),
  notification-controller v1.9 (notification.toolkit.fluxcd.io v1beta3 Alert/Provider, v1
  Receiver), image-reflector-controller v1.2 and image-automation-controller v1.2
  (image.toolkit.fluxcd.io/v1 only: v1beta1 and v1beta2 are no longer served), source-watcher
  v2.2 (source.extensions.fluxcd.io/v1beta1). Older Flux versions (v1beta2 sources,
  kustomize v1beta2, helm v2beta2, notification v1beta2) are gone from these CRDs.
* Kubernetes 1.33: Flux 2.9's `flux check` requires `>=1.33.0-0` (cmd/flux/check.go), and
  kubernetes-validate ships 1.33's schemas. Listed are the groups a 1.33 kube-apiserver serves
  with its default flags: the GA versions only, because beta APIs are off by default since
  1.24 (KEP-3136), so resource.k8s.io, coordination v1beta1, storage v1beta1 and the like are
  not served. Every kind here has its 1.33 schema in kubernetes-validate (tests check it);
  plurals, scope, verbs and short names are those `kubectl api-resources -o wide` prints for a
  1.33 server with default flags (written from that listing, not generated).
* sealed-secrets: bitnami.com/v1alpha1 SealedSecret (bitnami-labs/sealed-secrets
  helm/sealed-secrets/crds/bitnami.com_sealedsecrets.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

FLUX_RELEASE = "2.9"
KUBERNETES_RELEASE = "1.33"

_ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
_READ_VERBS = ("get", "list", "watch")
_CREATE_ONLY = ("create",)
_STATUS = (("status", ("get", "patch", "update")),)


@dataclass(frozen=True)
class Resource:
    """One kind served at one group version, in the terms discovery lists it."""

    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    verbs: tuple[str, ...] = _ALL_VERBS
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[tuple[str, tuple[str, ...]], ...] = ()
    provider: str = "kubernetes"  # "kubernetes", "flux" or "sealed-secrets"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()


def _core(kind: str, plural: str, *, namespaced: bool = True, verbs: tuple[str, ...] = _ALL_VERBS,
          short: tuple[str, ...] = (), cats: tuple[str, ...] = (),
          subs: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> Resource:
    return Resource("", "v1", kind, plural, namespaced, verbs, short, cats, subs)


def _k8s(group: str, version: str, kind: str, plural: str, *, namespaced: bool = True,
         verbs: tuple[str, ...] = _ALL_VERBS, short: tuple[str, ...] = (), cats: tuple[str, ...] = (),
         subs: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> Resource:
    return Resource(group, version, kind, plural, namespaced, verbs, short, cats, subs)


def _flux(group: str, version: str, kind: str, plural: str, short: tuple[str, ...], cats: tuple[str, ...],
          status: bool = True) -> Resource:
    return Resource(group, version, kind, plural, True, _ALL_VERBS, short, cats, _STATUS if status else (),
                    "flux")


_POD_SUBS = (("attach", ("create", "get")), ("binding", ("create",)),
             ("ephemeralcontainers", ("get", "patch", "update")),
             ("eviction", ("create",)), ("exec", ("create", "get")), ("log", ("get",)),
             ("portforward", ("create", "get")), ("proxy", ("create", "delete", "get", "patch", "update")),
             ("resize", ("get", "patch", "update")), ("status", ("get", "patch", "update")))
_SCALE = (("scale", ("get", "patch", "update")),) + _STATUS
_APPS_ALL = ("all",)
_SOURCES = ("all", "fluxcd", "fluxcd-sources")
_APPLIERS = ("all", "fluxcd", "fluxcd-appliers")
_NOTIFY = ("all", "fluxcd", "fluxcd-notifications")
_IMAGES = ("all", "fluxcd", "fluxcd-images")

KUBERNETES: tuple[Resource, ...] = (
    _core("Binding", "bindings", verbs=_CREATE_ONLY),
    _core("ComponentStatus", "componentstatuses", namespaced=False, verbs=("get", "list"), short=("cs",)),
    _core("ConfigMap", "configmaps", short=("cm",)),
    _core("Endpoints", "endpoints", short=("ep",)),
    _core("Event", "events", short=("ev",)),
    _core("LimitRange", "limitranges", short=("limits",)),
    _core("Namespace", "namespaces", namespaced=False, short=("ns",),
          verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
          subs=(("finalize", ("update",)),) + _STATUS),
    _core("Node", "nodes", namespaced=False, short=("no",),
          subs=(("proxy", ("create", "delete", "get", "patch", "update")),) + _STATUS),
    _core("PersistentVolumeClaim", "persistentvolumeclaims", short=("pvc",), subs=_STATUS),
    _core("PersistentVolume", "persistentvolumes", namespaced=False, short=("pv",), subs=_STATUS),
    _core("Pod", "pods", short=("po",), cats=_APPS_ALL, subs=_POD_SUBS),
    _core("PodTemplate", "podtemplates"),
    _core("ReplicationController", "replicationcontrollers", short=("rc",), cats=_APPS_ALL, subs=_SCALE),
    _core("ResourceQuota", "resourcequotas", short=("quota",), subs=_STATUS),
    _core("Secret", "secrets"),
    _core("ServiceAccount", "serviceaccounts", short=("sa",), subs=(("token", ("create",)),)),
    _core("Service", "services", short=("svc",), cats=_APPS_ALL,
          verbs=("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"),
          subs=(("proxy", ("create", "delete", "get", "patch", "update")),) + _STATUS),
    _k8s("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration", "mutatingwebhookconfigurations",
         namespaced=False, cats=("api-extensions",)),
    _k8s("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicy", "validatingadmissionpolicies",
         namespaced=False, cats=("api-extensions",), subs=_STATUS),
    _k8s("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicyBinding",
         "validatingadmissionpolicybindings", namespaced=False, cats=("api-extensions",)),
    _k8s("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations",
         namespaced=False, cats=("api-extensions",)),
    _k8s("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", namespaced=False,
         short=("crd", "crds"), cats=("api-extensions",), subs=_STATUS),
    _k8s("apiregistration.k8s.io", "v1", "APIService", "apiservices", namespaced=False, cats=("api-extensions",),
         subs=_STATUS),
    _k8s("apps", "v1", "ControllerRevision", "controllerrevisions"),
    _k8s("apps", "v1", "DaemonSet", "daemonsets", short=("ds",), cats=_APPS_ALL, subs=_STATUS),
    _k8s("apps", "v1", "Deployment", "deployments", short=("deploy",), cats=_APPS_ALL, subs=_SCALE),
    _k8s("apps", "v1", "ReplicaSet", "replicasets", short=("rs",), cats=_APPS_ALL, subs=_SCALE),
    _k8s("apps", "v1", "StatefulSet", "statefulsets", short=("sts",), cats=_APPS_ALL, subs=_SCALE),
    _k8s("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", namespaced=False,
         verbs=_CREATE_ONLY),
    _k8s("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", namespaced=False, verbs=_CREATE_ONLY),
    _k8s("authorization.k8s.io", "v1", "LocalSubjectAccessReview", "localsubjectaccessreviews", verbs=_CREATE_ONLY),
    _k8s("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", namespaced=False,
         verbs=_CREATE_ONLY),
    _k8s("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews", namespaced=False,
         verbs=_CREATE_ONLY),
    _k8s("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", namespaced=False,
         verbs=_CREATE_ONLY),
    # autoscaling/v2 first: it is the group's preferred version on a 1.33 server.
    _k8s("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", short=("hpa",),
         cats=_APPS_ALL, subs=_STATUS),
    _k8s("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", short=("hpa",),
         cats=_APPS_ALL, subs=_STATUS),
    _k8s("batch", "v1", "CronJob", "cronjobs", short=("cj",), cats=_APPS_ALL, subs=_STATUS),
    _k8s("batch", "v1", "Job", "jobs", cats=_APPS_ALL, subs=_STATUS),
    _k8s("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests", namespaced=False,
         short=("csr",), subs=(("approval", ("get", "patch", "update")),) + _STATUS),
    _k8s("coordination.k8s.io", "v1", "Lease", "leases"),
    _k8s("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
    _k8s("events.k8s.io", "v1", "Event", "events", short=("ev",)),
    _k8s("flowcontrol.apiserver.k8s.io", "v1", "FlowSchema", "flowschemas", namespaced=False, subs=_STATUS),
    _k8s("flowcontrol.apiserver.k8s.io", "v1", "PriorityLevelConfiguration", "prioritylevelconfigurations",
         namespaced=False, subs=_STATUS),
    _k8s("networking.k8s.io", "v1", "IPAddress", "ipaddresses", namespaced=False, short=("ip",)),
    _k8s("networking.k8s.io", "v1", "IngressClass", "ingressclasses", namespaced=False),
    _k8s("networking.k8s.io", "v1", "Ingress", "ingresses", short=("ing",), subs=_STATUS),
    _k8s("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", short=("netpol",)),
    _k8s("networking.k8s.io", "v1", "ServiceCIDR", "servicecidrs", namespaced=False, subs=_STATUS),
    _k8s("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", namespaced=False),
    _k8s("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", short=("pdb",), subs=_STATUS),
    _k8s("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", namespaced=False),
    _k8s("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", namespaced=False),
    _k8s("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
    _k8s("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    _k8s("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", namespaced=False, short=("pc",)),
    _k8s("storage.k8s.io", "v1", "CSIDriver", "csidrivers", namespaced=False),
    _k8s("storage.k8s.io", "v1", "CSINode", "csinodes", namespaced=False),
    _k8s("storage.k8s.io", "v1", "CSIStorageCapacity", "csistoragecapacities"),
    _k8s("storage.k8s.io", "v1", "StorageClass", "storageclasses", namespaced=False, short=("sc",)),
    _k8s("storage.k8s.io", "v1", "VolumeAttachment", "volumeattachments", namespaced=False, subs=_STATUS),
)

FLUX: tuple[Resource, ...] = (
    _flux("source.toolkit.fluxcd.io", "v1", "Bucket", "buckets", (), _SOURCES),
    _flux("source.toolkit.fluxcd.io", "v1", "ExternalArtifact", "externalartifacts", ("ea",), _SOURCES),
    _flux("source.toolkit.fluxcd.io", "v1", "GitRepository", "gitrepositories", ("gitrepo",), _SOURCES),
    _flux("source.toolkit.fluxcd.io", "v1", "HelmChart", "helmcharts", ("hc",), _SOURCES),
    _flux("source.toolkit.fluxcd.io", "v1", "HelmRepository", "helmrepositories", ("helmrepo",), _SOURCES),
    _flux("source.toolkit.fluxcd.io", "v1", "OCIRepository", "ocirepositories", ("ocirepo",), _SOURCES),
    _flux("source.extensions.fluxcd.io", "v1beta1", "ArtifactGenerator", "artifactgenerators", ("ag",), _SOURCES),
    _flux("kustomize.toolkit.fluxcd.io", "v1", "Kustomization", "kustomizations", ("ks",), _APPLIERS),
    _flux("helm.toolkit.fluxcd.io", "v2", "HelmRelease", "helmreleases", ("hr",), _APPLIERS),
    _flux("notification.toolkit.fluxcd.io", "v1", "Receiver", "receivers", (), _NOTIFY),
    _flux("notification.toolkit.fluxcd.io", "v1beta3", "Alert", "alerts", (), _NOTIFY, status=False),
    _flux("notification.toolkit.fluxcd.io", "v1beta3", "Provider", "providers", (), _NOTIFY, status=False),
    _flux("image.toolkit.fluxcd.io", "v1", "ImagePolicy", "imagepolicies", ("imgpol", "imagepol"), ()),
    _flux("image.toolkit.fluxcd.io", "v1", "ImageRepository", "imagerepositories", ("imgrepo", "imagerepo"), ()),
    _flux("image.toolkit.fluxcd.io", "v1", "ImageUpdateAutomation", "imageupdateautomations",
          ("iua", "imgupd", "imgauto"), _IMAGES),
)

SEALED_SECRETS: tuple[Resource, ...] = (
    Resource("bitnami.com", "v1alpha1", "SealedSecret", "sealedsecrets", subresources=_STATUS,
             provider="sealed-secrets"),
)

RESOURCES: tuple[Resource, ...] = KUBERNETES + FLUX + SEALED_SECRETS


def served(api_version: str, kind: str) -> bool:
    """True when the cluster serves `kind` at `api_version` (e.g. "image.toolkit.fluxcd.io/v1")."""
    return lookup(api_version, kind) is not None


def lookup(api_version: str, kind: str) -> Resource | None:
    return _by_api_version_kind().get((api_version, kind))


def lookup_plural(group: str, version: str, plural: str) -> Resource | None:
    """The resource a REST path names: /apis/GROUP/VERSION/PLURAL (group "" for /api/v1)."""
    return _by_path().get((group, version, plural))


def preferred_api_version(api_version: str, kind: str) -> str | None:
    """The apiVersion to use instead for `kind`: the preferred served version of its group,
    else of the one other group serving a kind of that name (extensions/v1beta1 Ingress ->
    networking.k8s.io/v1). None when no group serves the kind, or when several could."""
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    same_group = [r for r in RESOURCES if r.kind == kind and r.group == group]
    if same_group:
        return same_group[0].api_version
    groups = {r.group: r for r in RESOURCES if r.kind == kind}
    if len(groups) == 1:
        return next(iter(groups.values())).api_version
    return None


def groups_served(group: str) -> bool:
    return any(r.group == group for r in RESOURCES)


# -- discovery data ------------------------------------------------------------

def group_versions() -> list[tuple[str, list[str]]]:
    """Every group with its served versions, the preferred (first listed) first; core first."""
    found: dict[str, list[str]] = {}
    for resource in RESOURCES:
        versions = found.setdefault(resource.group, [])
        if resource.version not in versions:
            versions.append(resource.version)
    return list(found.items())


def resources_in(group: str, version: str) -> list[Resource]:
    return [r for r in RESOURCES if (r.group, r.version) == (group, version)]


@lru_cache(maxsize=1)
def _by_api_version_kind() -> dict[tuple[str, str], Resource]:
    return {(r.api_version, r.kind): r for r in RESOURCES}


@lru_cache(maxsize=1)
def _by_path() -> dict[tuple[str, str, str], Resource]:
    return {(r.group, r.version, r.plural): r for r in RESOURCES}
