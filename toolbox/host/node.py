"""This host's Kubernetes node name, which names its etcd member (`etcd-member-<node>`)."""

from __future__ import annotations

from cryptography import x509

from toolbox.host.paths import HostPaths
from toolbox.pki.certs import load_certificates

KUBELET_CLIENT_CERT = "/var/lib/kubelet/pki/kubelet-client-current.pem"
NODE_USER_PREFIX = "system:node:"


def node_name(paths: HostPaths) -> str | None:
    """The node name the kubelet registered, from its client certificate
    (CN=system:node:<node>): the name kubelet gives the etcd-member mirror pod, whose name
    is etcd's member name (spec §1.3). Not the short host name: on AWS the node is
    ip-10-0-143-125.ec2.internal, its kubernetes.io/hostname ip-10-0-143-125 (spec §7).
    None when the kubelet has no client certificate yet (a new host, or just after
    `kubelet reset`)."""
    path = paths.host(KUBELET_CLIENT_CERT)
    try:
        found = load_certificates(path.read_bytes())
    except (OSError, ValueError):
        return None
    for cert in found:
        for attribute in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME):
            common_name = str(attribute.value)
            if common_name.startswith(NODE_USER_PREFIX) and common_name != NODE_USER_PREFIX:
                return common_name[len(NODE_USER_PREFIX):]
    return None


def member_name(node: str) -> str:
    return f"etcd-member-{node}"
