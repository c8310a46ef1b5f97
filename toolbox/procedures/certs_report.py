"""`certs report`: every control-plane certificate on this host (and in the API when it
answers), soonest expiry first.

It reads only. The host's files come first because the case that matters is the API being
down because its certificates expired: an unreachable API is a note, not a failure.
Certificates of superseded copies (older `*-pod-N` revisions, kubelet certificates rotated
out of `*-current.pem`) are listed but marked old and never counted as expiring: OpenShift
keeps them on disk after rotation, and an alarm about them would be a false one.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from toolbox import log
from toolbox.context import Context
from toolbox.errors import ApiUnavailable, CertificatesExpiring
from toolbox.kube.client import KubeClient
from toolbox.pki.certs import certificates_in_tree, load_certificates

_log = log.get(__name__)

KUBELET_PKI = "/var/lib/kubelet/pki"
NAMESPACES = ("openshift-config", "openshift-config-managed", "openshift-kube-apiserver",
              "openshift-kube-apiserver-operator", "openshift-kube-controller-manager",
              "openshift-kube-controller-manager-operator", "openshift-kube-scheduler")
EMBEDDED = {"clusters": ("cluster", "certificate-authority-data"),
            "users": ("user", "client-certificate-data")}
_REVISION = re.compile(r"^(.+)-(\d+)$")
_ROTATED = re.compile(r"^(kubelet-(?:client|server))-.+\.pem$")
MAX_FILE = 1 << 20


@dataclass(frozen=True)
class CertEntry:
    where: str               # host path, or api:<namespace>/<kind>/<name>[<key>]
    common_name: str
    subject: str             # RFC 4514
    issuer: str
    sans: tuple[str, ...]
    not_after: dt.datetime
    days_left: float         # negative when expired
    is_ca: bool
    superseded: bool = False  # an older revision's or rotated-out copy

    @property
    def expired(self) -> bool:
        return self.days_left < 0


@dataclass
class CertReport:
    entries: list[CertEntry]
    notes: list[str] = field(default_factory=list)
    warn_days: int = 30

    def expiring(self, warn_days: int | None = None) -> list[CertEntry]:
        """In-use certificates with fewer than `warn_days` left, expired ones included."""
        limit = self.warn_days if warn_days is None else warn_days
        return [e for e in self.entries if e.days_left < limit and not e.superseded]

    def lines(self) -> list[str]:
        lines = [f"{'':<8} {'DAYS LEFT':>9}  {'EXPIRES (UTC)':<16}  {'SUBJECT CN':<44}  WHERE"]
        for e in self.entries:
            marker = ("EXPIRED" if e.expired else "SOON" if e.days_left < self.warn_days
                      else "")
            if e.superseded:
                marker = "old"
            lines.append(f"{marker:<8} {e.days_left:>9.1f}  {e.not_after:%Y-%m-%d %H:%M}  "
                         f"{_shorten(e.common_name, 44):<44}  {e.where}")
        soon = self.expiring()
        lines.append(f"{len(self.entries)} certificates; {len(soon)} in use expire within "
                     f"{self.warn_days} days ({sum(e.expired for e in soon)} already expired)")
        lines += [f"note: {n}" for n in self.notes]
        return lines

    def raise_if_expiring(self, warn_days: int | None = None) -> None:
        limit = self.warn_days if warn_days is None else warn_days
        soon = self.expiring(limit)
        if not soon:
            return
        first = soon[0]
        expired = sum(e.expired for e in soon)
        when = (f"expired {-first.days_left:.1f} days ago" if first.expired
                else f"expires in {first.days_left:.1f} days")
        raise CertificatesExpiring(
            f"{len(soon)} certificate(s) in use expire within {limit} days ({expired} already "
            f"expired); the soonest, {first.common_name} at {first.where}, {when} "
            f"({first.not_after:%Y-%m-%d %H:%M} UTC)",
            state="unchanged: the report only reads",
            next_step=("control-plane certificates expired: follow guide 3.4 (`ocp-recovery "
                       "recovery-apiserver create`, `ocp-recovery regenerate-certificates`, "
                       "then `ocp-recovery kubelet reset` and `ocp-recovery csr approve`)"
                       if expired else
                       "let the cluster rotate them (check the kube-apiserver-operator and "
                       "kube-controller-manager-operator), and take an etcd backup now"))


def report(ctx: Context, *, warn_days: int = 30, client: KubeClient | None = None,
           now: dt.datetime | None = None) -> CertReport:
    moment = now or dt.datetime.now(dt.UTC)
    found: list[tuple[str, x509.Certificate, bool]] = []
    found += _static_pod_resources(ctx)
    found += _top_level(ctx)
    found += _kubelet_pki(ctx)
    notes: list[str] = []
    if client is not None:
        found += _from_api(client, notes)
    entries = sorted((_entry(where, cert, moment, old) for where, cert, old in _once(found)),
                     key=lambda e: (e.not_after, e.where))
    _log.info("certs.report", certificates=len(entries), notes=len(notes))
    return CertReport(entries, notes, warn_days)


# ---- the host ---------------------------------------------------------------------------
def _static_pod_resources(ctx: Context) -> list[tuple[str, x509.Certificate, bool]]:
    root = ctx.paths.static_pod_resources
    if not root.is_dir():
        return []
    newest: dict[str, int] = {}
    for d in root.iterdir():
        match = _REVISION.match(d.name)
        if match and d.is_dir():
            newest[match[1]] = max(newest.get(match[1], 0), int(match[2]))

    def superseded(path: Path) -> bool:
        match = _REVISION.match(path.relative_to(root).parts[0])
        return match is not None and int(match[2]) < newest.get(match[1], 0)

    found = [(ctx.paths.shown(p), c, superseded(p)) for p, c in certificates_in_tree(root)]
    for path in sorted(root.rglob("*")):
        if not path.is_symlink() and path.is_file():
            found += [(ctx.paths.shown(path), c, superseded(path)) for c in _embedded(path)]
    return found


def _top_level(ctx: Context) -> list[tuple[str, x509.Certificate, bool]]:
    """Files directly in /etc/kubernetes: CA bundles and kubeconfigs (kubelet's bootstrap
    one is /etc/kubernetes/kubeconfig)."""
    directory = ctx.paths.kubernetes
    if not directory.is_dir():
        return []
    found = []
    for name in sorted(p.name for p in directory.iterdir()):
        # A symlink's absolute target is the host's, not this container's.
        path = ctx.paths.host(f"/etc/kubernetes/{name}")
        if not path.is_file() or path.stat().st_size > MAX_FILE:
            continue
        certs = load_certificates(path.read_bytes()) + _embedded(path)
        found += [(f"/etc/kubernetes/{name}", c, False) for c in certs]
    return found


def _kubelet_pki(ctx: Context) -> list[tuple[str, x509.Certificate, bool]]:
    """kubelet-*-current.pem are symlinks (absolute, on the host) to dated files: each
    certificate is shown once, as `link -> target`; dated files no link names are old."""
    directory = ctx.paths.host(KUBELET_PKI)
    if not directory.is_dir():
        return []
    names = sorted(p.name for p in directory.iterdir())
    live: dict[Path, str] = {}   # target -> the link's name
    for name in names:
        if (directory / name).is_symlink():
            target = ctx.paths.host(f"{KUBELET_PKI}/{name}")
            if target.is_file():
                live.setdefault(target, name)
    plain = [directory / n for n in names
             if not (directory / n).is_symlink() and (directory / n).is_file()]
    found = []
    for path in [*live, *(p for p in plain if p not in live)]:
        link = live.get(path)
        where = ctx.paths.shown(path)
        if link is not None:
            where = f"{KUBELET_PKI}/{link} -> {where}"
        rotated = _ROTATED.match(path.name)
        old = (link is None and rotated is not None
               and (directory / f"{rotated[1]}-current.pem").is_symlink())
        if path.stat().st_size <= MAX_FILE:
            found += [(where, c, old) for c in load_certificates(path.read_bytes())]
    return found


def _embedded(path: Path) -> list[x509.Certificate]:
    """Certificates inside a kubeconfig's *-data fields; [] for any other file."""
    if path.stat().st_size > MAX_FILE:
        return []
    data = path.read_bytes()
    if b"certificate-authority-data" not in data and b"client-certificate-data" not in data:
        return []
    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError:
        return []
    found = []
    for section, (inner, key) in EMBEDDED.items():
        for item in (doc.get(section) or []) if isinstance(doc, dict) else []:
            value = ((item or {}).get(inner) or {}).get(key)
            if value:
                found += _pem_certificates(str(value), encoded=True)
    return found


# ---- the API ----------------------------------------------------------------------------
def _from_api(client: KubeClient, notes: list[str]) -> list[tuple[str, x509.Certificate, bool]]:
    found: list[tuple[str, x509.Certificate, bool]] = []
    try:
        for namespace in NAMESPACES:
            for kind in ("Secret", "ConfigMap"):
                for obj in client.list(kind, namespace):
                    found += _object_certificates(namespace, kind, obj)
    except ApiUnavailable as exc:
        notes.append(f"API not reachable: {exc.what}; the API's secrets and configmaps are "
                     "not in this report (this host's files are)")
    return found


def _object_certificates(namespace: str, kind: str, obj: dict[str, Any]
                         ) -> list[tuple[str, x509.Certificate, bool]]:
    """tls.crt (and any other certificate key) of kubernetes.io/tls Secrets, ca-bundle.crt of
    ConfigMaps. Items of a list carry no `kind`, so the caller says which it is."""
    name = (obj.get("metadata") or {}).get("name", "?")
    data: dict[str, Any] = obj.get("data") or {}
    if kind == "Secret":
        if obj.get("type") != "kubernetes.io/tls":
            return []
        keys = [(k, _pem_certificates(str(v), encoded=True)) for k, v in sorted(data.items())]
    else:
        keys = [("ca-bundle.crt", _pem_certificates(str(data.get("ca-bundle.crt") or "")))]
    return [(f"api:{namespace}/{kind.lower()}/{name}[{key}]", c, False)
            for key, certs in keys for c in certs]


# ---- common -----------------------------------------------------------------------------
def _pem_certificates(text: str, *, encoded: bool = False) -> list[x509.Certificate]:
    try:
        data = base64.b64decode(text, validate=True) if encoded else text.encode()
        return load_certificates(data)
    except (binascii.Error, ValueError):
        return []


def _once(found: Iterable[tuple[str, x509.Certificate, bool]]
          ) -> list[tuple[str, x509.Certificate, bool]]:
    """One entry per distinct certificate per place (a bundle may repeat one)."""
    seen: set[tuple[str, bytes]] = set()
    result = []
    for where, cert, old in found:
        key = (where, cert.fingerprint(hashes.SHA256()))
        if key not in seen:
            seen.add(key)
            result.append((where, cert, old))
    return result


def _entry(where: str, cert: x509.Certificate, now: dt.datetime, old: bool) -> CertEntry:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(str(n.value) for n in sans)
    except x509.ExtensionNotFound:
        names = ()
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    not_after = cert.not_valid_after_utc
    return CertEntry(where=where, common_name=_common_name(cert),
                     subject=cert.subject.rfc4514_string(),
                     issuer=cert.issuer.rfc4514_string(), sans=names, not_after=not_after,
                     days_left=(not_after - now).total_seconds() / 86400, is_ca=is_ca,
                     superseded=old)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _common_name(cert: x509.Certificate) -> str:
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else cert.subject.rfc4514_string()
