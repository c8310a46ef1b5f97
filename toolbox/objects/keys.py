"""Where kube-apiserver keeps an object in etcd, and back.

`<prefix>/<resource>/<namespace>/<name>` for a namespaced object, `<prefix>/<resource>/<name>`
for a cluster-scoped one, and `<prefix>/<group>/<resource>/…` for the resources stored under
their group (custom resources, OpenShift's and aggregated types). The prefix is
`/kubernetes.io` on OpenShift (its default storagePrefix) and `/registry` upstream;
OpenShift's own API server keeps its types under `/openshift.io`. The key does not say
whether a resource is namespaced: one more path segment does. Two core resources keep a
sub-directory of their own (`services/specs`, `services/endpoints`).
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIXES = ("/kubernetes.io/", "/openshift.io/", "/registry/")
SUBDIRECTORY_RESOURCES = {"services/specs": "services", "services/endpoints": "endpoints"}
RESOURCE_OF_SUBDIRECTORY = {v: k for k, v in SUBDIRECTORY_RESOURCES.items()}


@dataclass(frozen=True, order=True)
class ObjectKey:
    resource: str        # e.g. "configmaps", "deployments", "routes.route.openshift.io"
    namespace: str       # "" for a cluster-scoped object
    name: str

    @property
    def namespaced(self) -> bool:
        return bool(self.namespace)


def parse_key(key: bytes) -> ObjectKey | None:
    """The object a key holds, or None for a key that is not an API object's (etcd's own,
    the API server's ranges and leases, anything outside the known prefixes)."""
    text = key.decode("utf-8", "backslashreplace")
    prefix = next((p for p in PREFIXES if text.startswith(p)), None)
    if prefix is None:
        return None
    parts = text[len(prefix):].split("/")
    group = ""
    if parts and "." in parts[0]:
        group, parts = parts[0], parts[1:]
    if len(parts) >= 2 and "/".join(parts[:2]) in SUBDIRECTORY_RESOURCES:
        parts = [SUBDIRECTORY_RESOURCES["/".join(parts[:2])], *parts[2:]]
    if len(parts) not in (2, 3) or not all(parts):
        return None
    resource = f"{parts[0]}.{group}" if group else parts[0]
    if len(parts) == 3:
        return ObjectKey(resource, parts[1], parts[2])
    return ObjectKey(resource, "", parts[1])


def resource_prefix(prefix: str, resource: str) -> str:
    """The key prefix under which `resource` (as parse_key names it) is stored."""
    base, dot, group = resource.partition(".")
    path = RESOURCE_OF_SUBDIRECTORY.get(base, base)
    return f"{prefix}{group}/{path}/" if dot else f"{prefix}{path}/"


def namespace_key(prefix: str, namespace: str) -> bytes:
    return f"{prefix}namespaces/{namespace}".encode()
