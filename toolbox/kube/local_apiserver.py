"""A kube-apiserver of the toolbox's own on a master's localhost: the recovery API server
(guide 3.4) and `snapshot browse`. Its KubeAPIServerConfig, the container that runs it from
the cluster's own kube-apiserver image, and a throw-away PKI: a short-lived CA of its own
signs its serving certificate (the SANs modern TLS stacks need) and an admin client
certificate, which the kubeconfig it prints carries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from toolbox.kube import config as kubeconfig
from toolbox.pki import certs

# The directory the container sees its files in (a hostPath volume).
IN_POD = "/etc/kubernetes/static-pod-resources"


@dataclass(frozen=True)
class LocalPki:
    """PEM files by name (`serving-ca.crt`, `serving.key`, …) and the admin kubeconfig."""

    ca: certs.Issued
    files: dict[str, tuple[bytes, int]]   # name -> (bytes, mode)
    expires: str                          # the CA's notAfter, ISO 8601

    @classmethod
    def create(cls, name: str, server: str, days: int, *, with_etcd: bool = False) -> LocalPki:
        """`with_etcd`: also an etcd serving and client certificate (for a scratch etcd on
        127.0.0.1 that trusts only this CA)."""
        ca = certs.self_signed_ca(f"ocp-recovery-{name}-ca", days=days)
        serving = certs.issue(ca, common_name="localhost", dns_names=["localhost"],
                              ip_addresses=["127.0.0.1"], days=days, client=False)
        admin = certs.issue(ca, common_name="system:admin", organizations=["system:masters"],
                            days=days, server=False)
        files = {"serving-ca.crt": (ca.cert_pem(), 0o644), "serving-ca.key": (ca.key_pem(), 0o600),
                 "serving.crt": (serving.cert_pem(), 0o644),
                 "serving.key": (serving.key_pem(), 0o600),
                 "admin.kubeconfig": (kubeconfig.render(
                     cluster=name, server=server, user="admin", context="admin",
                     ca_pem=ca.cert_pem(), client_cert_pem=admin.cert_pem(),
                     client_key_pem=admin.key_pem()), 0o600)}
        if with_etcd:
            etcd = certs.issue(ca, common_name="etcd-server", dns_names=["localhost"],
                               ip_addresses=["127.0.0.1"], days=days)
            client = certs.issue(ca, common_name="kube-apiserver", days=days, server=False)
            files |= {"etcd-server.crt": (etcd.cert_pem(), 0o644),
                      "etcd-server.key": (etcd.key_pem(), 0o600),
                      "etcd-client.crt": (client.cert_pem(), 0o644),
                      "etcd-client.key": (client.key_pem(), 0o600),
                      "etcd-serving-ca-bundle.crt": (ca.cert_pem(), 0o644)}
        return cls(ca, files, ca.cert.not_valid_after_utc.isoformat(timespec="seconds"))


def apiserver_config(bind: str, etcd_urls: tuple[str, ...]) -> bytes:
    """The KubeAPIServerConfig: serving on `bind` with the files of LocalPki (and
    `etcd-client.*`, `etcd-serving-ca-bundle.crt`, `encryption-config` beside them)."""
    config = {
        "apiVersion": "kubecontrolplane.config.openshift.io/v1",
        "kind": "KubeAPIServerConfig",
        "servingInfo": {"bindAddress": bind, "bindNetwork": "tcp4",
                        "certFile": f"{IN_POD}/serving.crt", "keyFile": f"{IN_POD}/serving.key",
                        "clientCA": f"{IN_POD}/serving-ca.crt"},
        "storageConfig": {"urls": list(etcd_urls),
                          "ca": f"{IN_POD}/etcd-serving-ca-bundle.crt",
                          "certFile": f"{IN_POD}/etcd-client.crt",
                          "keyFile": f"{IN_POD}/etcd-client.key"},
        # Nothing here issues or checks service-account tokens; the CA's key stands in.
        "serviceAccountPublicKeyFiles": [f"{IN_POD}/serving-ca.crt"],
        "apiServerArguments": {
            "storage-backend": ["etcd3"],
            "storage-media-type": ["application/vnd.kubernetes.protobuf"],
            "encryption-provider-config": [f"{IN_POD}/encryption-config"],
        },
    }
    return yaml.safe_dump(config, sort_keys=False).encode()


def apiserver_container(name: str, image: str, port: int) -> dict[str, Any]:
    return {"name": name, "image": image, "command": ["hyperkube", "kube-apiserver"],
            "args": [f"--openshift-config={IN_POD}/config.yaml"],
            "resources": {"requests": {"memory": "1Gi", "cpu": "150m"}},
            "ports": [{"containerPort": port}],
            "volumeMounts": [{"name": "resource-dir", "mountPath": IN_POD}]}


def static_pod(name: str, revision: str, containers: list[dict[str, Any]],
               resource_dir: str) -> bytes:
    """A host-network static pod of `containers`, `resource_dir` mounted as resource-dir."""
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "openshift-kube-apiserver",
                     "labels": {"revision": revision}},
        "spec": {
            "containers": containers,
            "hostNetwork": True,
            "terminationGracePeriodSeconds": 0,
            "priorityClassName": "system-node-critical",
            "tolerations": [{"operator": "Exists"}],
            "volumes": [{"name": "resource-dir", "hostPath": {"path": resource_dir}}],
        },
    }
    return yaml.safe_dump(pod, sort_keys=False).encode()
