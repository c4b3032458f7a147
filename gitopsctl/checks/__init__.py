"""The rules of `gitopsctl check`: an offline pre-commit review of the repository.

Each rule has a stable id; a finding names file:line, the rule, what is wrong and how
to fix it. Errors fail the check (exit 1), warnings do not. Which files are reviewed comes
from gitopsctl.yaml (checks.scope): the services' paths, the VM targets' compose files and
sealed secrets, the Kubernetes targets' Flux Kustomizations; without a config, every YAML
file git sees.

    GOC001 yaml-parse               every YAML file parses (syntax, duplicate keys)
    GOC002 kustomize-build          every kustomization directory builds (kubectl kustomize)
    GOC003 plaintext-secret         no `kind: Secret` in git; seal it into a SealedSecret
    GOC004 credential-like-value    no literal passwords, tokens, keys in manifests
    GOC005 unpinned-image           images carry a tag other than latest, or a digest
    GOC006 marker-unknown-policy    every setter marker names an ImagePolicy the repository
                                    defines
    GOC007 service-without-marker   every configured service has a marker for its policy in
                                    its paths (a VM service: or its target's compose file)
    GOC008 compose-invalid          compose files pass `docker compose config`
    GOC009 compose-no-healthcheck   (warning) compose services without a healthcheck
    GOC010 two-writers              a marked field is also written by an active
                                    ImageUpdateAutomation that rollback does not suspend
    GOC011 marker-malformed         a `$imagepolicy` comment Flux would not understand
    GOC012 config-invalid           gitopsctl.yaml does not load
    GOC013 link-skipped             (warning) a symbolic link that leaves the repository,
                                    dangles, or points outside the scanned paths: never
                                    followed, its target is not checked or bumped
    GOC014 api-not-served           an object's apiVersion/kind is not served by Flux 2.9 /
                                    Kubernetes 1.33 (gitopsctl.kubeapis); the hint names the
                                    version to use
    GOC015 schema-invalid           an object breaks its kind's schema, strictly (unknown
                                    fields, missing required fields, wrong types or values)
    GOC016 marker-not-bumped        (warning) a marker whose policy no service names, or
                                    outside the paths of the service that names it
    GOC017 compose-service-unknown  a compose service a VM service names is not in its
                                    target's compose file
    GOC018 route-broken             a Service without a selector that routes nowhere: no
                                    EndpointSlice names it, ports unpaired by name, addresses
                                    the API server refuses; an orphan slice or FQDN slice
                                    (warnings); an invalid ExternalName

Hostile input (a file over 8 MiB, control characters, nesting deeper than 100, alias
bombs; see gitopsctl.yamlsafe) is no finding: check stops with exit 2 and file:line.
"""

from __future__ import annotations

from dataclasses import dataclass

from gitopsctl.errors import Location

ERROR = "error"
WARNING = "warning"

RULES: dict[str, str] = {
    "GOC001": "yaml-parse",
    "GOC002": "kustomize-build",
    "GOC003": "plaintext-secret",
    "GOC004": "credential-like-value",
    "GOC005": "unpinned-image",
    "GOC006": "marker-unknown-policy",
    "GOC007": "service-without-marker",
    "GOC008": "compose-invalid",
    "GOC009": "compose-no-healthcheck",
    "GOC010": "two-writers",
    "GOC011": "marker-malformed",
    "GOC012": "config-invalid",
    "GOC013": "link-skipped",
    "GOC014": "api-not-served",
    "GOC015": "schema-invalid",
    "GOC016": "marker-not-bumped",
    "GOC017": "compose-service-unknown",
    "GOC018": "route-broken",
}


@dataclass(frozen=True)
class Finding:
    rule: str
    location: Location
    message: str
    hint: str
    severity: str = ERROR

    @property
    def name(self) -> str:
        return RULES[self.rule]

    def to_dict(self) -> dict:
        return {"rule": self.rule, "name": self.name, "severity": self.severity,
                "location": str(self.location), "file": self.location.path,
                "line": self.location.line, "column": self.location.column,
                "message": self.message, "hint": self.hint}

    def sort_key(self) -> tuple:
        return (self.location.path, self.location.line or 0, self.location.column or 0, self.rule)
