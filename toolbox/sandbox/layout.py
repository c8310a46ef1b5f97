"""A sandbox master's host root, laid out like an RHCOS 4.3 master (reference spec §1.3)."""

from __future__ import annotations

import base64
import datetime as dt
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from toolbox.etcd.cluster import EnvFile
from toolbox.pki import certs
from toolbox.pki.profiles import member_cert_requests

DOMAIN = "sandbox.ocp4.test"
# The simulated cluster was installed two days ago: past the first certificate rotation.
INSTALLED = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
FIRST_IP_OCTET = 11
SANDBOX_PEER_IPS = ("127.0.0.1",)  # every sandbox peer dials from it
SIGNER_CA_DIR = "/root/signer"  # the CA pairs for `signer serve`, on each installed master
KUBE_APISERVER_REVISIONS = (2, 9, 10)  # 10 > 9 by number, not by text: natural sort matters
ETCD_QUOTA_43 = 7 << 30  # 4.3's etcd.conf; 4.4 and later raise it to 8 GiB
ETCD_SNAPSHOT_COUNT_43 = 100_000
ETCD_CONF = """ETCD_SNAPSHOT_COUNT={snapshot_count}
ETCD_HEARTBEAT_INTERVAL=100
ETCD_ELECTION_TIMEOUT=1000
ETCD_QUOTA_BACKEND_BYTES={quota}
ETCD_DEBUG=false
ETCD_ENABLE_PPROF=false
"""
# The etcd-member container's shell, as in the 4.3 manifest (listen on the escaped IPs).
ETCD_MEMBER_SCRIPT = """#!/bin/sh
set -euo pipefail
source /run/etcd/environment
set -a
source /etc/etcd/etcd.conf
set +a
exec etcd \\
  --initial-advertise-peer-urls=https://${ETCD_IPV4_ADDRESS}:2380 \\
  --cert-file=/etc/ssl/etcd/system:etcd-server:${ETCD_DNS_NAME}.crt \\
  --key-file=/etc/ssl/etcd/system:etcd-server:${ETCD_DNS_NAME}.key \\
  --trusted-ca-file=/etc/ssl/etcd/ca.crt \\
  --client-cert-auth=true \\
  --peer-cert-file=/etc/ssl/etcd/system:etcd-peer:${ETCD_DNS_NAME}.crt \\
  --peer-key-file=/etc/ssl/etcd/system:etcd-peer:${ETCD_DNS_NAME}.key \\
  --peer-trusted-ca-file=/etc/ssl/etcd/ca.crt \\
  --peer-client-cert-auth=true \\
  --advertise-client-urls=https://${ETCD_IPV4_ADDRESS}:2379 \\
  --listen-client-urls=https://${ETCD_ESCAPED_ALL_IPS}:2379${ETCD_SANDBOX_LOCALHOST_URL} \\
  --listen-peer-urls=https://${ETCD_ESCAPED_ALL_IPS}:2380
"""


@dataclass(frozen=True)
class EtcdConf:
    """The etcd.conf settings an operator may change, 4.3's by default.
    `snapshot_count`: etcd holds that many raft entries (plus 5000 kept for followers to
    catch up) in memory; with the fill's 96 KiB entries 4.3's 100000 is several GiB."""
    quota: int = ETCD_QUOTA_43
    snapshot_count: int = ETCD_SNAPSHOT_COUNT_43


ETCD_CONF_43 = EtcdConf()


@dataclass(frozen=True)
class MasterSpec:
    index: int

    @property
    def node_name(self) -> str:
        return f"master-{self.index}"

    @property
    def ip(self) -> str:
        return f"127.0.0.{FIRST_IP_OCTET + self.index}"

    @property
    def dns_name(self) -> str:
        return f"etcd-{self.index}.{DOMAIN}"

    @property
    def member_name(self) -> str:
        """The pod-derived name the 4.3 scripts must use: `etcd-member-<nodeName>`."""
        return f"etcd-member-{self.node_name}"

    @property
    def peer_url(self) -> str:
        return f"https://{self.ip}:2380"

    @property
    def client_url(self) -> str:
        return f"https://{self.ip}:2379"


@dataclass(frozen=True)
class ClusterPki:
    etcd_ca: certs.Issued
    metric_ca: certs.Issued
    root_ca: certs.Issued
    etcd_client: certs.Issued

    @classmethod
    def create(cls) -> ClusterPki:
        etcd_ca = certs.self_signed_ca("etcd-signer", not_before=INSTALLED)
        return cls(
            etcd_ca=etcd_ca,
            metric_ca=certs.self_signed_ca("etcd-metric-signer", not_before=INSTALLED),
            root_ca=certs.self_signed_ca("root-ca", not_before=INSTALLED),
            etcd_client=certs.issue(etcd_ca, common_name="etcd-client",
                                    organizations=["etcd-client"], server=False, days=365,
                                    not_before=INSTALLED),
        )

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name in ("etcd_ca", "metric_ca", "root_ca", "etcd_client"):
            pair: certs.Issued = getattr(self, name)
            _write(directory / f"{name}.crt", pair.cert_pem())
            _write(directory / f"{name}.key", pair.key_pem(), 0o600)

    @classmethod
    def load(cls, directory: Path) -> ClusterPki:
        def pair(name: str) -> certs.Issued:
            return certs.Issued.load(directory / f"{name}.crt", directory / f"{name}.key")

        return cls(pair("etcd_ca"), pair("metric_ca"), pair("root_ca"), pair("etcd_client"))


def _write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    os.chmod(path, mode)


def _dump(path: Path, obj: Any, mode: int = 0o644) -> None:
    _write(path, yaml.safe_dump(obj, sort_keys=False), mode)


def etcd_member_manifest() -> dict[str, Any]:
    volumes = [
        ("certs", "/etc/kubernetes/static-pod-resources/etcd-member", "/etc/ssl/etcd/"),
        ("discovery", "/run/etcd/", "/run/etcd/"),
        ("data-dir", "/var/lib/etcd/", "/var/lib/etcd/"),
        ("conf", "/etc/etcd", "/etc/etcd/"),
        ("kubeconfig", "/etc/kubernetes/kubeconfig", "/etc/kubernetes/kubeconfig"),
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "etcd-member", "namespace": "openshift-etcd",
                     "labels": {"k8s-app": "etcd"}},
        "spec": {
            "initContainers": [
                {"name": "discovery", "image": "quay.io/openshift/machine-config-operator",
                 "command": ["/usr/bin/setup-etcd-environment", "run",
                             f"--discovery-srv={DOMAIN}",
                             "--output-file=/run/etcd/environment", "--v=4"]},
                {"name": "certs", "image": "quay.io/openshift/kube-client-agent",
                 "command": ["/bin/sh", "-c", "# requests member certs when missing"]},
            ],
            "containers": [
                {"name": "etcd-member", "image": "quay.io/openshift/etcd",
                 "command": ["/bin/sh", "-c", ETCD_MEMBER_SCRIPT],
                 "env": [{"name": "ETCD_DATA_DIR", "value": "/var/lib/etcd"},
                         {"name": "ETCD_NAME",
                          "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                 "volumeMounts": [{"name": n, "mountPath": m} for n, _, m in volumes]},
                {"name": "etcd-metrics", "image": "quay.io/openshift/etcd",
                 "command": ["/bin/sh", "-c", "exec etcd grpc-proxy start"]},
            ],
            "hostNetwork": True,
            "priorityClassName": "system-node-critical",
            "tolerations": [{"operator": "Exists"}],
            "volumes": [{"name": n, "hostPath": {"path": h}} for n, h, _ in volumes],
        },
    }


CONFIG_IN_POD = "/etc/kubernetes/static-pod-resources/configmaps/config/config.yaml"
CERTS_IN_POD = "/etc/kubernetes/static-pod-certs"
KCM_KUBECONFIG_IN_POD = ("/etc/kubernetes/static-pod-resources/configmaps/"
                         "controller-manager-kubeconfig/kubeconfig")
KCM_SECURE_PORT = 10257
# What makes a user's deletes happen, and what runs the backup CronJob on the sandbox's node
# (`--kubernetes`): jobs, their schedule, the PVC variant's claim, and the node lifecycle
# controller, which lifts a new node's not-ready taint. Not deployment/replicaset: they
# would make Pods of objects a restore test would then see appear.
KCM_CONTROLLERS = ("namespace", "garbagecollector", "job", "cronjob", "persistentvolume-binder",
                   "nodelifecycle")
SCHEDULER_KUBECONFIG_IN_POD = ("/etc/kubernetes/static-pod-resources/configmaps/"
                               "scheduler-kubeconfig/kubeconfig")
SCHEDULER_SECURE_PORT = 10259


def control_plane_manifest(pod: str, revision: int) -> dict[str, Any]:
    """A 4.3 static pod: the revision's resource dir and the pod's cert dir as hostPaths;
    kube-apiserver reads its KubeAPIServerConfig from the revision's config.yaml."""
    namespace = {"kube-apiserver": "openshift-kube-apiserver",
                 "kube-controller-manager": "openshift-kube-controller-manager",
                 "kube-scheduler": "openshift-kube-scheduler"}[pod]
    resource_dir = f"/etc/kubernetes/static-pod-resources/{pod}-pod-{revision}"
    container: dict[str, Any] = {
        "name": f"{pod}-{revision}", "image": f"quay.io/openshift/{pod}",
        "command": ["hyperkube", pod],
        "volumeMounts": [{"name": "resource-dir",
                          "mountPath": "/etc/kubernetes/static-pod-resources"},
                         {"name": "cert-dir", "mountPath": CERTS_IN_POD}]}
    if pod == "kube-apiserver":
        container["args"] = [f"--openshift-config={CONFIG_IN_POD}"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod, "namespace": namespace,
                     "labels": {"app": pod, "revision": str(revision)}},
        "spec": {
            "containers": [container],
            "hostNetwork": True,
            "volumes": [{"name": "resource-dir", "hostPath": {"path": resource_dir}},
                        {"name": "cert-dir", "hostPath": {
                            "path": f"/etc/kubernetes/static-pod-resources/{pod}-certs"}}],
        },
    }


def kube_controller_manager_args(spec: MasterSpec) -> list[str]:
    """The flags of a real kube-controller-manager pod: its kubeconfig (as 4.3's names it),
    and the sandbox's choices, which 4.3 gives in its config.yaml instead: a few controllers,
    one instance (no leader election), its own credentials for every controller (no
    service-account tokens to mint), HTTPS on this master's address only (masters share a
    machine), no insecure port."""
    return [f"--kubeconfig={KCM_KUBECONFIG_IN_POD}",
            f"--controllers={','.join(KCM_CONTROLLERS)}",
            "--leader-elect=false",
            "--use-service-account-credentials=false",
            f"--bind-address={spec.ip}",
            f"--secure-port={KCM_SECURE_PORT}",
            "--port=0",
            "-v=2"]


def kube_scheduler_args(spec: MasterSpec) -> list[str]:
    """The flags of a real kube-scheduler pod: its kubeconfig for the API and for delegated
    authentication, one instance, HTTPS on this master's address only."""
    return [f"--kubeconfig={SCHEDULER_KUBECONFIG_IN_POD}",
            f"--authentication-kubeconfig={SCHEDULER_KUBECONFIG_IN_POD}",
            f"--authorization-kubeconfig={SCHEDULER_KUBECONFIG_IN_POD}",
            "--leader-elect=false",
            f"--bind-address={spec.ip}",
            f"--secure-port={SCHEDULER_SECURE_PORT}",
            "--port=0",
            "-v=2"]


def encryption_config() -> str:
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    return yaml.safe_dump({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [{"resources": ["secrets"], "providers": [
            {"aescbc": {"keys": [{"name": "1", "secret": key}]}}, {"identity": {}}]}],
    }, sort_keys=False)


def _lay_out_kubelet(kubelet: Path, spec: MasterSpec, pki: ClusterPki) -> None:
    """The kubelet's client certificate (a `-current` symlink, as kubelet keeps it) and the
    kubeconfig it made from it: what `kubelet reset` moves aside."""
    node = f"system:node:{spec.node_name}"
    pair = certs.issue(pki.root_ca, common_name=node, organizations=["system:nodes"],
                       server=False, days=30, not_before=INSTALLED)
    stamp = INSTALLED.strftime("%Y-%m-%d-%H-%M-%S")
    _write(kubelet / f"pki/kubelet-client-{stamp}.pem", pair.cert_pem() + pair.key_pem(), 0o600)
    (kubelet / "pki/kubelet-client-current.pem").symlink_to(
        f"/var/lib/kubelet/pki/kubelet-client-{stamp}.pem")
    current = "/var/lib/kubelet/pki/kubelet-client-current.pem"
    _write(kubelet / "kubeconfig",
           _kubelet_kubeconfig({"client-certificate": current, "client-key": current}), 0o600)


def _kubelet_kubeconfig(user: dict[str, str]) -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "kubelet",
        "clusters": [{"name": "local", "cluster": {"server": f"https://api-int.{DOMAIN}:6443"}}],
        "contexts": [{"name": "kubelet", "context": {"cluster": "local", "user": "kubelet"}}],
        "users": [{"name": "kubelet", "user": user}]})


def etcd_environment(spec: MasterSpec, initial_cluster: str | None, state: str | None, *,
                     on_localhost: bool = False) -> EnvFile:
    """What setup-etcd-environment writes: the carried-over cluster settings (exported) and
    this host's addresses (plain). Without cluster settings it falls back to SRV discovery.
    `on_localhost`: the client URL on 127.0.0.1 too (ETCD_SANDBOX_LOCALHOST_URL, which only
    the sandbox's manifest reads: a real master's 0.0.0.0 covers it)."""
    env = EnvFile()
    if initial_cluster:
        env.exported["ETCD_INITIAL_CLUSTER"] = initial_cluster
        if state:
            env.exported["ETCD_INITIAL_CLUSTER_STATE"] = state
    else:
        env.exported["ETCD_DISCOVERY_SRV"] = DOMAIN
    env.plain.update({
        "ETCD_IPV4_ADDRESS": spec.ip,
        "ETCD_ESCAPED_IP_ADDRESS": spec.ip,
        "ETCD_ESCAPED_ALL_IPS": spec.ip,  # 0.0.0.0 on a real master; one IP per sandbox host
        "ETCD_SANDBOX_LOCALHOST_URL": ",https://127.0.0.1:2379" if on_localhost else "",
        "ETCD_LOCALHOST_IP": "127.0.0.1",
        "ETCD_ESCAPED_LOCALHOST_IP": "127.0.0.1",
        "ETCD_DNS_NAME": spec.dns_name,
        "ETCD_WILDCARD_DNS_NAME": f"*.{DOMAIN}",
    })
    return env


def lay_out_master(root: Path, spec: MasterSpec, pki: ClusterPki, *,
                   initial_cluster: str | None, blank: bool = False,
                   etcd_conf: EtcdConf = ETCD_CONF_43) -> None:
    """A master host root. `blank`: a freshly installed host (MCO files only: manifests,
    etcd.conf and the CAs; no member certs, no data, no kube-apiserver revisions).
    `etcd_conf`: what etcd.conf says, as an operator edits it."""
    kube = root / "etc/kubernetes"
    _dump(kube / "manifests/etcd-member.yaml", etcd_member_manifest())
    top = KUBE_APISERVER_REVISIONS[-1]
    for pod in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        _dump(kube / f"manifests/{pod}-pod.yaml", control_plane_manifest(pod, top))
    _write(root / "etc/etcd/etcd.conf", ETCD_CONF.format(quota=etcd_conf.quota,
                                                     snapshot_count=etcd_conf.snapshot_count))
    member_dir = kube / "static-pod-resources/etcd-member"
    _write(member_dir / "ca.crt", pki.etcd_ca.cert_pem())
    _write(member_dir / "metric-ca.crt", pki.metric_ca.cert_pem())
    _write(member_dir / "root-ca.crt", pki.root_ca.cert_pem())
    (root / "var/lib/etcd").mkdir(parents=True, exist_ok=True, mode=0o700)
    (root / "run/etcd").mkdir(parents=True, exist_ok=True)
    (root / "var/home/core").mkdir(parents=True, exist_ok=True)
    if not (root / "home").exists():
        (root / "home").symlink_to("var/home")  # as on RHCOS
    # The installer's bootstrap kubeconfig (its token long rotated away).
    _write(kube / "kubeconfig", _kubelet_kubeconfig({"token": "installer-bootstrap-token"}),
           0o600)
    if blank:
        return
    _lay_out_kubelet(root / "var/lib/kubelet", spec, pki)
    # What an operator writes from the secrets etcd-signer and etcd-metric-signer before
    # `signer serve` (README, chapter 2); a real master has no CA key on disk.
    signer_dir = root / SIGNER_CA_DIR.lstrip("/")
    signer_dir.parent.mkdir(mode=0o700, exist_ok=True)  # /root
    signer_dir.mkdir(mode=0o700, exist_ok=True)
    for name, pair in (("etcd_ca", pki.etcd_ca), ("metric_ca", pki.metric_ca)):
        _write(signer_dir / f"{name}.crt", pair.cert_pem())
        _write(signer_dir / f"{name}.key", pair.key_pem(), 0o600)
    for request in member_cert_requests(spec.dns_name, spec.ip, DOMAIN, SANDBOX_PEER_IPS):
        ca = pki.metric_ca if request.signer == "metric" else pki.etcd_ca
        pair = certs.issue(ca, common_name=request.common_name,
                           organizations=[request.organization], dns_names=request.dns_names,
                           ip_addresses=request.ip_addresses, days=3 * 365,
                           not_before=INSTALLED)
        _write(member_dir / f"{request.file_stem}.crt", pair.cert_pem())
        _write(member_dir / f"{request.file_stem}.key", pair.key_pem(), 0o600)
    for revision in KUBE_APISERVER_REVISIONS:
        rev_dir = kube / f"static-pod-resources/kube-apiserver-pod-{revision}"
        _dump(rev_dir / "kube-apiserver-pod.yaml", control_plane_manifest("kube-apiserver",
                                                                           revision))
        _write(rev_dir / "configmaps/etcd-serving-ca/ca-bundle.crt", pki.etcd_ca.cert_pem())
        _write(rev_dir / "secrets/etcd-client/tls.crt", pki.etcd_client.cert_pem(), 0o600)
        _write(rev_dir / "secrets/etcd-client/tls.key", pki.etcd_client.key_pem(), 0o600)
        _write(rev_dir / "secrets/encryption-config/encryption-config", encryption_config(),
               0o600)
    _write(root / "run/etcd/environment",
           etcd_environment(spec, initial_cluster, "new" if initial_cluster else None).render())
