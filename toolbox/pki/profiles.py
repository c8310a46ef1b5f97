"""The etcd member certificates of OpenShift 4.3 (reference spec §6.1: CN, O, SANs)."""

from __future__ import annotations

from dataclasses import dataclass

SERVICE_NAMES = (
    "etcd.kube-system.svc",
    "etcd.kube-system.svc.cluster.local",
    "etcd.openshift-etcd.svc",
    "etcd.openshift-etcd.svc.cluster.local",
)


@dataclass(frozen=True)
class CertRequest:
    kind: str
    common_name: str
    organization: str
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    signer: str  # "etcd" (server, peer) or "metric"

    @property
    def file_stem(self) -> str:
        """`system:etcd-server:<dns>`: the name the 4.3 pod reads the pair under."""
        return self.common_name


def member_cert_requests(dns_name: str, ip: str, discovery_domain: str,
                         extra_peer_ips: tuple[str, ...] = ()) -> list[CertRequest]:
    """`extra_peer_ips`: the sandbox's masters all dial their peers from 127.0.0.1, which
    etcd checks against the peer certificate's IP SANs; a real master needs none."""
    wildcard = f"*.{discovery_domain}"
    return [
        CertRequest("server", f"system:etcd-server:{dns_name}", "system:etcd-servers",
                    ("localhost", *SERVICE_NAMES, wildcard), (ip, "127.0.0.1"), "etcd"),
        CertRequest("peer", f"system:etcd-peer:{dns_name}", "system:etcd-peers",
                    (dns_name, discovery_domain), (ip, *extra_peer_ips), "etcd"),
        CertRequest("metric", f"system:etcd-metric:{dns_name}", "system:etcd-metrics",
                    ("localhost", *SERVICE_NAMES, dns_name), (ip,), "metric"),
    ]
