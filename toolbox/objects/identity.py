"""Which cluster a backup is of. Not etcd's cluster ID: guide 3.3's restore makes a new etcd
cluster, so the same cluster's backups from before and after it differ there. The cluster's
own identity is kept in its objects: ClusterVersion `version`'s spec.clusterID on OpenShift,
and the kube-system namespace's uid, set once at install, on any Kubernetes."""

from __future__ import annotations

import json

from toolbox.objects.encoding import ObjectDecodeError, decode
from toolbox.objects.keys import PREFIXES

CLUSTER_VERSION = "config.openshift.io/clusterversions/version"
IDENTITY_KEYS = frozenset(
    f"{prefix}{path}".encode() for prefix in PREFIXES
    for path in (CLUSTER_VERSION, "namespaces/kube-system"))


def cluster_identity(values: dict[bytes, bytes]) -> tuple[str, str] | None:
    """("clusterID", id) or ("kube-system uid", uid) from the values of IDENTITY_KEYS found;
    None when neither is there."""
    for key, value in sorted(values.items()):
        if key.decode().endswith(CLUSTER_VERSION):
            try:
                cluster_id = json.loads(value).get("spec", {}).get("clusterID")
            except (ValueError, AttributeError):
                cluster_id = None
            if cluster_id:
                return "ClusterVersion clusterID", str(cluster_id)
    for key, value in sorted(values.items()):
        if key.decode().endswith("namespaces/kube-system"):
            try:
                return "kube-system namespace uid", decode(value).meta.uid
            except ObjectDecodeError:
                return None
    return None
