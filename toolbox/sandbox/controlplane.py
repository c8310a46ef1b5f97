"""The sandbox's control plane: kube-apiserver's PKI and config on the first master, and the
OpenShift objects the guide's 3.4 procedures read, seeded into a real kube-apiserver.

History is simulated with the same rotation code the toolbox uses: the control plane was
installed INSTALL_AGE ago (every chain issued then) and its operators last rotated it when the
etcd PKI was made (what was due renewed). `expire` puts the install-time objects back, so the
short-lived certificates are long expired while the ten-year signers stay the same, which is
what a cluster left powered off for months looks like.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from toolbox.errors import ApiUnavailable
from toolbox.kube import config as kubeconfig
from toolbox.kube.client import KubeClient
from toolbox.kube.manifests import annotated, host_path_of, load_pod
from toolbox.pki import certs, rotation
from toolbox.pki.rotation import CONFIG, MemoryStore, Ref
from toolbox.sandbox.layout import (
    CERTS_IN_POD,
    INSTALLED,
    KCM_CONTROLLERS,
    KCM_KUBECONFIG_IN_POD,
    KUBE_APISERVER_REVISIONS,
    SCHEDULER_KUBECONFIG_IN_POD,
    MasterSpec,
    _dump,
    _write,
    kube_controller_manager_args,
    kube_scheduler_args,
)
from toolbox.waiting import wait_until

API_PORT = 6443
INSTALL_AGE = dt.timedelta(days=500)
ADMIN_CA = Ref(CONFIG, "admin-kubeconfig-client-ca")
MCO = "openshift-machine-config-operator"
BOOTSTRAPPER = "node-bootstrapper"
BOOTSTRAP_TOKEN = Ref(MCO, "node-bootstrapper-token")
NAMESPACES = (CONFIG, rotation.CONFIG_MANAGED, rotation.KAS, rotation.KAS_OPERATOR,
              rotation.KCM, rotation.KCM_OPERATOR, "openshift-kube-scheduler", MCO)
OPERATOR_KINDS = (("KubeAPIServer", "kubeapiservers"),
                  ("KubeControllerManager", "kubecontrollermanagers"),
                  ("KubeScheduler", "kubeschedulers"))
RESOURCES_IN_POD = "/etc/kubernetes/static-pod-resources"
SA_PUBLIC = "configmaps/sa-token-signing-certs/service-account-001.pub"
SA_PRIVATE = "secrets/service-account-private-key/service-account.key"
# In kube-controller-manager's resource dir: the API's serving CAs (4.3's name), and its
# client certificate (write_pod_files puts it there).
KCM_SERVER_CA = "configmaps/serviceaccount-ca/ca-bundle.crt"
KCM_CLIENT = "secrets/kube-controller-manager-client-cert-key"
# It runs every controller as itself, system:kube-controller-manager, whose bootstrap role
# may not delete: it gets the roles 4.3 gives those controllers' service accounts.
KCM_USER = "system:kube-controller-manager"
KCM_CONTROLLER_ROLES = {"namespace": "system:controller:namespace-controller",
                        "garbagecollector": "system:controller:generic-garbage-collector",
                        "job": "system:controller:job-controller",
                        "cronjob": "system:controller:cronjob-controller",
                        "persistentvolume-binder": "system:controller:persistent-volume-binder",
                        "nodelifecycle": "system:controller:node-controller"}
SCHEDULER_CLIENT = "secrets/kube-scheduler-client-cert-key"


def api_url(spec: MasterSpec) -> str:
    return f"https://{spec.ip}:{API_PORT}"


def infrastructure_status(spec: MasterSpec) -> dict[str, str]:
    """No DNS and no load balancer here: the first master's address plays both API URLs."""
    return {"apiServerURL": api_url(spec), "apiServerInternalURI": api_url(spec),
            "etcdDiscoveryDomain": "sandbox.ocp4.test", "infrastructureName": "sandbox",
            "platform": "None"}


@dataclass
class ControlPlanePki:
    admin: certs.Issued          # system:admin in system:masters, signed by the admin CA
    service_account_key: rsa.RSAPrivateKey
    installed: MemoryStore       # every chain as issued at install time
    current: MemoryStore         # after the last rotation

    @classmethod
    def create(cls, spec: MasterSpec) -> ControlPlanePki:
        install_time = INSTALLED - INSTALL_AGE
        admin_ca = certs.self_signed_ca("admin-kubeconfig-signer", not_before=install_time)
        admin = certs.issue(admin_ca, common_name="system:admin",
                            organizations=["system:masters"], server=False, days=3650,
                            not_before=install_time)
        installed = MemoryStore()
        installed.put(rotation.bundle_configmap(ADMIN_CA, [admin_ca.cert]))
        rotation.rotate(installed, install_time, infrastructure_status(spec))
        current = MemoryStore()
        current.objects.update(installed.objects)
        rotation.rotate(current, INSTALLED, infrastructure_status(spec))
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(admin, key, installed, current)

    def save(self, directory: Path) -> None:
        _write(directory / "admin.crt", self.admin.cert_pem())
        _write(directory / "admin.key", self.admin.key_pem(), 0o600)
        _write(directory / "service-account.key", certs.key_pem(self.service_account_key), 0o600)
        for name in ("installed", "current"):
            store: MemoryStore = getattr(self, name)
            _write(directory / f"control-plane-{name}.json",
                   json.dumps(list(store.objects.values())), 0o600)

    @classmethod
    def load(cls, directory: Path) -> ControlPlanePki:
        def store(name: str) -> MemoryStore:
            result = MemoryStore()
            for obj in json.loads((directory / f"control-plane-{name}.json").read_text()):
                result.put(obj)
            return result

        admin = certs.Issued.load(directory / "admin.crt", directory / "admin.key")
        key = serialization.load_pem_private_key(
            (directory / "service-account.key").read_bytes(), None)
        return cls(admin, key, store("installed"), store("current"))  # type: ignore[arg-type]

    def serving_cas(self) -> bytes:
        """The CAs of the API's serving certificates, as the installer's kubeconfig has them."""
        return b"".join(
            certs.pem(c) for ref in ("loadbalancer-serving-ca", "localhost-serving-ca")
            for c in rotation.bundle_certificates(
                self.current.get("ConfigMap", Ref(rotation.KAS_OPERATOR, ref))))

    def admin_kubeconfig(self, spec: MasterSpec) -> bytes:
        """The installer's admin kubeconfig: trusts the serving CAs, as the installer's does."""
        return kubeconfig.render(cluster="sandbox", server=api_url(spec), user="admin",
                                 context="admin", ca_pem=self.serving_cas(),
                                 client_cert_pem=self.admin.cert_pem(),
                                 client_key_pem=self.admin.key_pem())


def write_kube_apiserver_files(root: Path, spec: MasterSpec, pki: ControlPlanePki,
                               etcd_urls: list[str]) -> None:
    """The KubeAPIServerConfig of every revision, and the certificates of `pki.current`."""
    public = pki.service_account_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    certs_dir = f"{CERTS_IN_POD}/secrets"
    config = {
        "apiVersion": "kubecontrolplane.config.openshift.io/v1",
        "kind": "KubeAPIServerConfig",
        "servingInfo": {
            "bindAddress": f"{spec.ip}:{API_PORT}",
            "bindNetwork": "tcp4",
            # Clients here reach the API by address (no DNS, so no SNI): the certificate they
            # must verify is the default one, the internal load balancer's.
            "certFile": f"{certs_dir}/internal-loadbalancer-serving-certkey/tls.crt",
            "keyFile": f"{certs_dir}/internal-loadbalancer-serving-certkey/tls.key",
            "clientCA": f"{CERTS_IN_POD}/configmaps/client-ca/ca-bundle.crt",
            "namedCertificates": [{
                "certFile": f"{certs_dir}/localhost-serving-cert-certkey/tls.crt",
                "keyFile": f"{certs_dir}/localhost-serving-cert-certkey/tls.key",
                "names": ["localhost"]}],
        },
        "storageConfig": {
            "urls": etcd_urls,
            "ca": f"{RESOURCES_IN_POD}/configmaps/etcd-serving-ca/ca-bundle.crt",
            "certFile": f"{RESOURCES_IN_POD}/secrets/etcd-client/tls.crt",
            "keyFile": f"{RESOURCES_IN_POD}/secrets/etcd-client/tls.key",
        },
        "serviceAccountPublicKeyFiles": [f"{RESOURCES_IN_POD}/{SA_PUBLIC}"],
        "apiServerArguments": {
            "encryption-provider-config": [
                f"{RESOURCES_IN_POD}/secrets/encryption-config/encryption-config"],
            # Sandbox only: upstream kube-apiserver issues tokens itself, OpenShift's KCM did.
            "service-account-signing-key-file": [f"{RESOURCES_IN_POD}/{SA_PRIVATE}"],
        },
    }
    kube = root / "etc/kubernetes/static-pod-resources"
    for revision in KUBE_APISERVER_REVISIONS:
        rev_dir = kube / f"kube-apiserver-pod-{revision}"
        _dump(rev_dir / "configmaps/config/config.yaml", config)
        _write(rev_dir / SA_PUBLIC, public)
        _write(rev_dir / SA_PRIVATE, certs.key_pem(pki.service_account_key), 0o600)
    write_pod_files(root, pki.current)


def write_kube_controller_manager_files(root: Path, spec: MasterSpec,
                                        pki: ControlPlanePki) -> None:
    """Make the kube-controller-manager pod a real one, as 4.3's: a kubeconfig in its
    revision's resource dir naming, by their in-pod paths, the API's serving CAs and the
    client certificate of system:kube-controller-manager (kube-control-plane-signer's, which
    the API's client CA holds); then its flags in the manifest. After
    write_kube_apiserver_files, which wrote that certificate."""
    _make_kubeconfig_pod(root, spec, pki, "kube-controller-manager", KCM_KUBECONFIG_IN_POD,
                         KCM_CLIENT, kube_controller_manager_args(spec))


def write_kube_scheduler_files(root: Path, spec: MasterSpec, pki: ControlPlanePki) -> None:
    """Make the kube-scheduler pod a real one, as kube-controller-manager's (its client
    certificate, system:kube-scheduler, is in its resource dir as 4.3 names it)."""
    _make_kubeconfig_pod(root, spec, pki, "kube-scheduler", SCHEDULER_KUBECONFIG_IN_POD,
                         SCHEDULER_CLIENT, kube_scheduler_args(spec))


def _make_kubeconfig_pod(root: Path, spec: MasterSpec, pki: ControlPlanePki, component: str,
                         kubeconfig_in_pod: str, client_secret: str, args: list[str]) -> None:
    manifest = root / f"etc/kubernetes/manifests/{component}-pod.yaml"
    pod = load_pod(manifest)
    resource_dir = root / host_path_of(pod, "resource-dir", str(manifest)).strip("/")
    _write(resource_dir / KCM_SERVER_CA, pki.serving_cas())
    client = f"{RESOURCES_IN_POD}/{client_secret}"
    _dump(resource_dir / kubeconfig_in_pod.removeprefix(f"{RESOURCES_IN_POD}/"), {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "loopback", "cluster": {
            "certificate-authority": f"{RESOURCES_IN_POD}/{KCM_SERVER_CA}",
            "server": api_url(spec)}}],
        "contexts": [{"name": component, "context": {"cluster": "loopback", "user": component}}],
        "current-context": component,
        "preferences": {},
        "users": [{"name": component, "user": {
            "client-certificate": f"{client}/tls.crt", "client-key": f"{client}/tls.key"}}]})
    pod["spec"]["containers"][0]["args"] = args
    _dump(manifest, pod)


def write_pod_files(root: Path, store: MemoryStore) -> None:
    manifests = root / "etc/kubernetes/manifests"
    for item in rotation.pod_files(store):
        pod = load_pod(manifests / item.manifest)
        directory = host_path_of(pod, item.volume, item.manifest).strip("/")
        _write(root / directory / item.relative, item.data, 0o600 if item.secret else 0o644)


def seed(client: KubeClient, pki: ControlPlanePki, spec: MasterSpec, timeout: float) -> None:
    """Create what the procedures read: namespaces, the operator and infrastructure
    resources (with their CRDs), every chain of `pki.current`, the node-bootstrapper
    service account with its token secret and its right to create CSRs; and the rights of
    kube-controller-manager's controllers."""
    for namespace in NAMESPACES:
        client.apply({"apiVersion": "v1", "kind": "Namespace",
                      "metadata": {"name": namespace}})
    crds = [("operator.openshift.io", kind, plural) for kind, plural in OPERATOR_KINDS]
    crds.append(("config.openshift.io", "Infrastructure", "infrastructures"))
    for group, kind, plural in crds:
        client.apply(_crd(group, kind, plural))
    for _, kind, _ in crds:
        _wait_served(client, kind, timeout)
    for kind, _ in OPERATOR_KINDS:
        client.apply({"apiVersion": "operator.openshift.io/v1", "kind": kind,
                      "metadata": {"name": "cluster"},
                      "spec": {"managementState": "Managed"}})
    client.apply({"apiVersion": "config.openshift.io/v1", "kind": "Infrastructure",
                  "metadata": {"name": "cluster"}, "spec": {},
                  "status": infrastructure_status(spec)})
    for obj in pki.current.objects.values():
        client.apply(obj)
    account = client.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                            "metadata": {"name": BOOTSTRAPPER, "namespace": MCO}})
    uid = account["metadata"]["uid"]
    token = service_account_token(pki.service_account_key, MCO, BOOTSTRAPPER,
                                  BOOTSTRAP_TOKEN.name, uid)
    ca_pem = pki.serving_cas()
    client.apply({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
        "metadata": {"name": BOOTSTRAP_TOKEN.name, "namespace": MCO, "annotations": {
            "kubernetes.io/service-account.name": BOOTSTRAPPER,
            "kubernetes.io/service-account.uid": uid}},
        "data": {"token": _b64(token.encode()), "ca.crt": _b64(ca_pem),
                 "namespace": _b64(MCO.encode())}})
    # Who may ask for certificates: the bootstrapper for new kubelets, the nodes to renew.
    for binding, subject in (
            ("system-bootstrap-node-bootstrapper",
             {"kind": "ServiceAccount", "name": BOOTSTRAPPER, "namespace": MCO}),
            ("system-nodes-renew-certificates",
             {"kind": "Group", "name": "system:nodes",
              "apiGroup": "rbac.authorization.k8s.io"})):
        client.apply({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": binding},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "system:node-bootstrapper"},
            "subjects": [subject]})
    # What 4.3's Node authorizer lets a kubelet do; the sandbox's API authorizes by RBAC only.
    client.apply({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "sandbox:nodes"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "system:node"},
        "subjects": [{"kind": "Group", "name": "system:nodes",
                      "apiGroup": "rbac.authorization.k8s.io"}]})
    for controller in KCM_CONTROLLERS:
        role = KCM_CONTROLLER_ROLES[controller]
        client.apply({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": f"sandbox:kube-controller-manager:{controller}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": role},
            "subjects": [{"kind": "User", "name": KCM_USER,
                          "apiGroup": "rbac.authorization.k8s.io"}]})


def expire(client: KubeClient, pki: ControlPlanePki, root: Path) -> None:
    """Put the install-time chains back in the API and on disk, then restart kube-apiserver
    (an annotation on its manifest, as the real procedures do)."""
    for obj in pki.installed.objects.values():
        client.apply(obj)
    write_pod_files(root, pki.installed)
    manifest = root / "etc/kubernetes/manifests/kube-apiserver-pod.yaml"
    pod = load_pod(manifest)
    _write(manifest, annotated(pod, "sandbox.ocp-recovery/expired-at",
                               dt.datetime.now(dt.UTC).isoformat(timespec="seconds")))


def service_account_token(key: rsa.RSAPrivateKey, namespace: str, account: str,
                          secret: str, uid: str) -> str:
    """A legacy service-account token (RS256 JWT) as the token controller mints them."""
    header = {"alg": "RS256", "kid": ""}
    claims = {"iss": "kubernetes/serviceaccount",
              "kubernetes.io/serviceaccount/namespace": namespace,
              "kubernetes.io/serviceaccount/secret.name": secret,
              "kubernetes.io/serviceaccount/service-account.name": account,
              "kubernetes.io/serviceaccount/service-account.uid": uid,
              "sub": f"system:serviceaccount:{namespace}:{account}"}
    signing_input = ".".join(_b64url(json.dumps(part, separators=(",", ":")).encode())
                             for part in (header, claims))
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


def _crd(group: str, kind: str, plural: str) -> dict[str, Any]:
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": "Cluster",
                     "names": {"kind": kind, "plural": plural, "singular": kind.lower(),
                               "listKind": f"{kind}List"},
                     "versions": [{"name": "v1", "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": {
                                       "type": "object",
                                       "x-kubernetes-preserve-unknown-fields": True}}}]}}


def _wait_served(client: KubeClient, kind: str, timeout: float) -> None:
    def served() -> bool:
        try:
            client.list(kind)
        except ApiUnavailable:
            return False
        return True

    wait_until(served, timeout=timeout, what=f"the API to serve {kind} (a new CRD)",
               next_step="read the kube-apiserver log of the sandbox's first master")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

