"""The control-plane certificate chains of OpenShift 4.3 and when each part is due.

Each chain is signer (a CA in a secret) -> CA bundle (a configmap) -> targets (secrets), as
the kube-apiserver and kube-controller-manager operators keep them (reference spec §11). The
rules are library-go's certrotation ones: a certificate is regenerated when it is missing,
expired, or past its refresh point (80 % of its life); a bundle gains the current signer and
loses expired certificates; a target is also regenerated when its issuer left the bundle or
its host names changed.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from toolbox.pki import certs

REFRESH_FRACTION = 0.8
NOT_BEFORE = "auth.openshift.io/certificate-not-before"
NOT_AFTER = "auth.openshift.io/certificate-not-after"
ISSUER = "auth.openshift.io/certificate-issuer"
HOSTNAMES = "auth.openshift.io/certificate-hostnames"

KAS_OPERATOR = "openshift-kube-apiserver-operator"
KAS = "openshift-kube-apiserver"
KCM_OPERATOR = "openshift-kube-controller-manager-operator"
KCM = "openshift-kube-controller-manager"
CONFIG = "openshift-config"
CONFIG_MANAGED = "openshift-config-managed"

# The service network's first address; the sandbox uses OpenShift's default network.
SERVICE_NETWORK_HOSTNAMES = (
    "kubernetes", "kubernetes.default", "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local", "openshift", "openshift.default",
    "openshift.default.svc", "openshift.default.svc.cluster.local", "172.30.0.1")


@dataclass(frozen=True)
class Ref:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Target:
    ref: Ref
    kind: str                          # "client", "serving" or "ca" (an intermediate signer)
    days: float
    user: str = ""                     # client: the CN
    groups: tuple[str, ...] = ()       # client: the O
    hostnames: tuple[str, ...] = ()    # serving: fixed names
    hostnames_from: str = ""           # serving: the Infrastructure status URL it serves


@dataclass(frozen=True)
class Chain:
    signer: Ref
    signer_days: float
    bundle: Ref
    targets: tuple[Target, ...]


def _client(ns: str, name: str, user: str, *groups: str) -> Target:
    return Target(Ref(ns, name), "client", 30, user=user, groups=groups)


def _serving(ns: str, name: str, *hostnames: str, hostnames_from: str = "") -> Target:
    return Target(Ref(ns, name), "serving", 30, hostnames=hostnames,
                  hostnames_from=hostnames_from)


CHAINS: tuple[Chain, ...] = (
    Chain(Ref(KAS_OPERATOR, "aggregator-client-signer"), 30,
          Ref(CONFIG_MANAGED, "kube-apiserver-aggregator-client-ca"),
          (_client(KAS, "aggregator-client", "system:openshift-aggregator"),)),
    Chain(Ref(KAS_OPERATOR, "kube-apiserver-to-kubelet-signer"), 365,
          Ref(KAS_OPERATOR, "kube-apiserver-to-kubelet-client-ca"),
          (_client(KAS, "kubelet-client", "system:kube-apiserver", "kube-master"),)),
    Chain(Ref(KAS_OPERATOR, "localhost-serving-signer"), 3650,
          Ref(KAS_OPERATOR, "localhost-serving-ca"),
          (_serving(KAS, "localhost-serving-cert-certkey", "localhost", "127.0.0.1"),)),
    Chain(Ref(KAS_OPERATOR, "service-network-serving-signer"), 3650,
          Ref(KAS_OPERATOR, "service-network-serving-ca"),
          (_serving(KAS, "service-network-serving-certkey", *SERVICE_NETWORK_HOSTNAMES),)),
    Chain(Ref(KAS_OPERATOR, "loadbalancer-serving-signer"), 3650,
          Ref(KAS_OPERATOR, "loadbalancer-serving-ca"),
          (_serving(KAS, "external-loadbalancer-serving-certkey", hostnames_from="apiServerURL"),
           _serving(KAS, "internal-loadbalancer-serving-certkey",
                    hostnames_from="apiServerInternalURI"))),
    Chain(Ref(KAS_OPERATOR, "localhost-recovery-serving-signer"), 3650,
          Ref(KAS_OPERATOR, "localhost-recovery-serving-ca"),
          (_serving(KAS, "localhost-recovery-serving-certkey", "localhost-recovery"),)),
    Chain(Ref(KAS_OPERATOR, "kube-control-plane-signer"), 60,
          Ref(KAS_OPERATOR, "kube-control-plane-signer-ca"),
          (_client(CONFIG_MANAGED, "kube-controller-manager-client-cert-key",
                   "system:kube-controller-manager"),
           _client(CONFIG_MANAGED, "kube-scheduler-client-cert-key", "system:kube-scheduler"),
           _client(KAS, "kube-apiserver-cert-syncer-client-cert-key",
                   "system:kube-apiserver-cert-syncer", "system:masters"))),
    Chain(Ref(KCM_OPERATOR, "csr-signer-signer"), 60,
          Ref(KCM_OPERATOR, "csr-controller-signer-ca"),
          (Target(Ref(KCM_OPERATOR, "csr-signer"), "ca", 30, user="kube-csr-signer"),)),
)

# Bundles made of other bundles (spec §11 step 3), in the order they must be rebuilt.
CSR_SIGNER_CA = Ref(KCM_OPERATOR, "csr-signer-ca")
CSR_CONTROLLER_CA = Ref(KCM_OPERATOR, "csr-controller-ca")
CSR_CONTROLLER_CA_PUBLISHED = Ref(CONFIG_MANAGED, "csr-controller-ca")
CSR_SIGNER_FOR_KCM = Ref(KCM, "csr-signer")
KAS_CLIENT_CA = Ref(KAS, "client-ca")
CLIENT_CA_PARTS = (Ref(CONFIG, "admin-kubeconfig-client-ca"), CSR_CONTROLLER_CA_PUBLISHED,
                   Ref(KAS_OPERATOR, "kube-apiserver-to-kubelet-client-ca"),
                   Ref(KAS_OPERATOR, "kube-control-plane-signer-ca"),
                   Ref(KAS, "user-client-ca"))


def target_hostnames(target: Target, infrastructure_status: dict[str, str]) -> tuple[str, ...]:
    if not target.hostnames_from:
        return target.hostnames
    url = infrastructure_status.get(target.hostnames_from, "")
    host = urlsplit(url).hostname
    return (host,) if host else ()


# ---- when is something due -------------------------------------------------------------
def due(cert: x509.Certificate | None, now: dt.datetime) -> str:
    """Why `cert` must be regenerated ("" when it need not be)."""
    if cert is None:
        return "missing"
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now >= end:
        return f"expired {end:%Y-%m-%d}"
    if now < start:
        return f"not valid before {start:%Y-%m-%d}"
    if now >= start + (end - start) * REFRESH_FRACTION:
        return f"past its refresh point (expires {end:%Y-%m-%d})"
    return ""


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    key = issuer.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                       cert.signature_hash_algorithm)  # type: ignore[arg-type]
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes,
                       ec.ECDSA(cert.signature_hash_algorithm))  # type: ignore[arg-type]
        else:
            return False
    except InvalidSignature:
        return False
    return True


def hostnames_of(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    names = [str(n.value) for n in sans if isinstance(n, x509.DNSName | x509.IPAddress)]
    return tuple(sorted(names))


def merged_bundle(existing: Sequence[x509.Certificate], add: Sequence[x509.Certificate],
                  now: dt.datetime) -> list[x509.Certificate]:
    """`existing` + `add`, expired ones dropped, each certificate once, order kept."""
    seen: set[bytes] = set()
    result = []
    for cert in [*existing, *add]:
        fingerprint = cert.fingerprint(hashes.SHA256())
        if fingerprint in seen or cert.not_valid_after_utc <= now:
            continue
        seen.add(fingerprint)
        result.append(cert)
    return result


# ---- making them ---------------------------------------------------------------------
def new_signer(ref: Ref, days: float, now: dt.datetime) -> certs.Issued:
    """A signer named as library-go names them, `<namespace>_<name>@<unix time>`, without
    the namespace where that passes the 64 characters X.509 allows (Go does not check)."""
    name = f"{ref.namespace}_{ref.name}@{int(now.timestamp())}"
    if len(name) > 64:
        name = name.split("_", 1)[1]
    return certs.self_signed_ca(name,
                                days=days, not_before=now - dt.timedelta(minutes=1),
                                key_kind="rsa")


def new_target(target: Target, signer: certs.Issued, hostnames: Sequence[str],
               now: dt.datetime, *, days: float | None = None) -> certs.Issued:
    start = now - dt.timedelta(minutes=1)
    life = target.days if days is None else days
    if target.kind == "ca":
        return certs.issue_ca(signer, f"{target.user}_@{int(now.timestamp())}", days=life,
                              not_before=start)
    if target.kind == "client":
        return certs.issue(signer, common_name=target.user, organizations=target.groups,
                           days=life, not_before=start, server=False, key_kind="rsa")
    ips = [h for h in hostnames if _is_ip(h)]
    names = [h for h in hostnames if not _is_ip(h)]
    return certs.issue(signer, common_name=hostnames[0] if hostnames else target.ref.name,
                       dns_names=names, ip_addresses=ips, days=life, not_before=start,
                       client=False, key_kind="rsa")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def tls_secret(ref: Ref, pair: certs.Issued, *, extra: dict[str, str] | None = None,
               chain: Sequence[x509.Certificate] = ()) -> dict[str, object]:
    """A kubernetes.io/tls Secret with library-go's annotations."""
    cert = pair.cert
    annotations = {NOT_BEFORE: cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
                   NOT_AFTER: cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
                   ISSUER: _common_name(cert.issuer)}
    names = hostnames_of(cert)
    if names:
        annotations[HOSTNAMES] = ",".join(names)
    annotations.update(extra or {})
    pem = pair.cert_pem() + b"".join(certs.pem(c) for c in chain)
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": ref.name, "namespace": ref.namespace,
                         "annotations": annotations},
            "data": {"tls.crt": _b64(pem), "tls.key": _b64(pair.key_pem())}}


def bundle_configmap(ref: Ref, bundle: Sequence[x509.Certificate]) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": ref.name, "namespace": ref.namespace},
            "data": {"ca-bundle.crt": b"".join(certs.pem(c) for c in bundle).decode()}}


def _common_name(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else name.rfc4514_string()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ---- the whole rotation, over any store of API objects ---------------------------------
# Which object is written to which directory of which control-plane pod (spec §11 step 4):
# (manifest file, hostPath volume, "secrets"|"configmaps", object).
POD_FILES: tuple[tuple[str, str, str, Ref], ...] = (
    ("kube-apiserver-pod.yaml", "cert-dir", "secrets", Ref(KAS, "service-network-serving-certkey")),
    ("kube-apiserver-pod.yaml", "cert-dir", "configmaps", KAS_CLIENT_CA),
    ("kube-apiserver-pod.yaml", "cert-dir", "secrets", Ref(KAS, "localhost-serving-cert-certkey")),
    ("kube-apiserver-pod.yaml", "cert-dir", "secrets",
     Ref(KAS, "internal-loadbalancer-serving-certkey")),
    ("kube-controller-manager-pod.yaml", "resource-dir", "secrets",
     Ref(CONFIG_MANAGED, "kube-controller-manager-client-cert-key")),
    ("kube-controller-manager-pod.yaml", "cert-dir", "secrets", CSR_SIGNER_FOR_KCM),
    ("kube-scheduler-pod.yaml", "resource-dir", "secrets",
     Ref(CONFIG_MANAGED, "kube-scheduler-client-cert-key")),
)


class Store(Protocol):
    """Secrets and configmaps by reference: the API, or a dict (the sandbox, --dry-run)."""

    def get(self, kind: str, ref: Ref) -> dict[str, Any] | None: ...

    def put(self, obj: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Change:
    ref: Ref
    kind: str       # Secret or ConfigMap
    reason: str


class MemoryStore:
    """A store in a dict; with `base`, reads fall through to it and writes stay here."""

    def __init__(self, base: Store | None = None):
        self.base = base
        self.objects: dict[tuple[str, Ref], dict[str, Any]] = {}

    def get(self, kind: str, ref: Ref) -> dict[str, Any] | None:
        found = self.objects.get((kind, ref))
        if found is None and self.base is not None:
            return self.base.get(kind, ref)
        return found

    def put(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        self.objects[(obj["kind"], Ref(meta["namespace"], meta["name"]))] = obj


def secret_pair(obj: dict[str, Any] | None) -> certs.Issued | None:
    """The first certificate and the key of a TLS secret; None when absent or unreadable."""
    if not obj:
        return None
    data = obj.get("data") or {}
    try:
        chain = certs.load_certificates(base64.b64decode(data.get("tls.crt", "")))
        key = serialization.load_pem_private_key(base64.b64decode(data.get("tls.key", "")),
                                                 None)
    except ValueError:
        return None
    if not chain:
        return None
    return certs.Issued(chain[0], key)  # type: ignore[arg-type]


def bundle_certificates(obj: dict[str, Any] | None) -> list[x509.Certificate]:
    if not obj:
        return []
    try:
        return certs.load_certificates(str((obj.get("data") or {}).get("ca-bundle.crt", ""))
                                       .encode())
    except ValueError:
        return []


def rotate(store: Store, now: dt.datetime, infrastructure_status: dict[str, str]
           ) -> list[Change]:
    """Bring every chain, and the bundles built from them, up to date. Idempotent: a second
    run at the same time changes nothing."""
    changes: list[Change] = []

    def put(obj: dict[str, Any], reason: str) -> None:
        store.put(obj)
        meta = obj["metadata"]
        changes.append(Change(Ref(meta["namespace"], meta["name"]), obj["kind"], reason))

    targets_by_ref: dict[Ref, certs.Issued] = {}
    for chain in CHAINS:
        signer = secret_pair(store.get("Secret", chain.signer))
        reason = due(signer.cert if signer else None, now)
        if signer is None or reason:
            signer = new_signer(chain.signer, chain.signer_days, now)
            put(tls_secret(chain.signer, signer), f"signer {reason}")
        old_bundle = bundle_certificates(store.get("ConfigMap", chain.bundle))
        bundle = merged_bundle(old_bundle, [signer.cert], now)
        if [c.fingerprint(hashes.SHA256()) for c in bundle] != \
                [c.fingerprint(hashes.SHA256()) for c in old_bundle]:
            put(bundle_configmap(chain.bundle, bundle), "bundle gains the current signer")
        for target in chain.targets:
            pair = secret_pair(store.get("Secret", target.ref))
            names = target_hostnames(target, infrastructure_status)
            reason = due(pair.cert if pair else None, now)
            if pair is not None and not reason:
                if not any(issued_by(pair.cert, ca) for ca in bundle):
                    reason = "its issuer is not in the bundle"
                elif target.kind == "serving" and hostnames_of(pair.cert) != tuple(sorted(names)):
                    reason = "its host names changed"
            if pair is None or reason:
                pair = new_target(target, signer, names, now)
                put(tls_secret(target.ref, pair), f"certificate {reason}")
            targets_by_ref[target.ref] = pair
    _derive_bundles(store, now, targets_by_ref, put)
    return changes


def _derive_bundles(store: Store, now: dt.datetime, targets: dict[Ref, certs.Issued],
                    put: Any) -> None:
    def update(ref: Ref, bundle: list[x509.Certificate], why: str) -> None:
        old = bundle_certificates(store.get("ConfigMap", ref))
        if [c.fingerprint(hashes.SHA256()) for c in old] != \
                [c.fingerprint(hashes.SHA256()) for c in bundle]:
            put(bundle_configmap(ref, bundle), why)

    csr_signer = targets[Ref(KCM_OPERATOR, "csr-signer")]
    signer_ca = merged_bundle(bundle_certificates(store.get("ConfigMap", CSR_SIGNER_CA)),
                              [csr_signer.cert], now)
    update(CSR_SIGNER_CA, signer_ca, "gains the current csr-signer")
    controller_ca = merged_bundle(signer_ca, bundle_certificates(
        store.get("ConfigMap", Ref(KCM_OPERATOR, "csr-controller-signer-ca"))), now)
    update(CSR_CONTROLLER_CA, controller_ca, "csr-signer-ca + csr-controller-signer-ca")
    update(CSR_CONTROLLER_CA_PUBLISHED, controller_ca, f"copy of {CSR_CONTROLLER_CA}")
    current = secret_pair(store.get("Secret", CSR_SIGNER_FOR_KCM))
    if current is None or current.cert != csr_signer.cert:
        put(tls_secret(CSR_SIGNER_FOR_KCM, csr_signer), "the current csr-signer for the "
            "controller manager")
    parts: list[x509.Certificate] = []
    for ref in CLIENT_CA_PARTS:
        parts += bundle_certificates(store.get("ConfigMap", ref))
    update(KAS_CLIENT_CA, merged_bundle([], parts, now), "the combined client CA")


@dataclass(frozen=True)
class PodFile:
    manifest: str        # kube-apiserver-pod.yaml …
    volume: str          # the hostPath volume it lands in
    relative: str        # secrets/<name>/<key> or configmaps/<name>/<key>
    data: bytes
    secret: bool


def pod_files(store: Store) -> list[PodFile]:
    """Every file the control-plane pods read of the rotated objects, from `store`."""
    files = []
    for manifest, volume, kind, ref in POD_FILES:
        obj = store.get("Secret" if kind == "secrets" else "ConfigMap", ref)
        if obj is None:
            continue
        for key, value in sorted((obj.get("data") or {}).items()):
            data = base64.b64decode(value) if kind == "secrets" else str(value).encode()
            files.append(PodFile(manifest, volume, f"{kind}/{ref.name}/{key}", data,
                                 kind == "secrets"))
    return files
