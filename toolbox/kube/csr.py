"""Verdicts on kubelet CertificateSigningRequests (`certificates.k8s.io/v1`, as a dict).

After expired certificates (guide 3.4) every kubelet asks for a new client certificate, then
a serving one, and someone must approve them. These rules are a simplified version of the
kube-controller-manager's kubelet CSR approver and OpenShift's cluster-machine-approver: the
subject, requestor, usages, SANs and signer must be those of a kubelet asking for itself.
What they do not do is match the request against Machine objects or node addresses; the
`expected_nodes` set stands in for that. Pure functions: no I/O.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

BOOTSTRAPPER = "system:serviceaccount:openshift-machine-config-operator:node-bootstrapper"
NODE_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
SERVING_SIGNER = "kubernetes.io/kubelet-serving"
SIGNERS = {"client": CLIENT_SIGNER, "serving": SERVING_SIGNER}
EXTENDED = {"client": "client auth", "serving": "server auth"}
OPTIONAL_USAGE = "key encipherment"


@dataclass(frozen=True)
class CsrReview:
    name: str
    requestor: str
    node_name: str | None
    usages: tuple[str, ...]
    kind: str          # "client", "serving" or "unknown"
    state: str         # "Pending", "Approved", "Denied" or "Failed"
    valid: bool        # the request itself is what a kubelet may be given
    reason: str

    @property
    def approvable(self) -> bool:
        return self.valid and self.state == "Pending"


def state_of(obj: dict[str, Any]) -> str:
    """Denied and Failed win over Approved (an approved CSR the signer failed is Failed)."""
    types = {c.get("type") for c in (obj.get("status") or {}).get("conditions") or []
             if c.get("status", "True") == "True"}
    for state in ("Denied", "Failed", "Approved"):
        if state in types:
            return state
    return "Pending"


def review(obj: dict[str, Any], expected_nodes: set[str] | None = None) -> CsrReview:
    spec = obj.get("spec") or {}
    name = str((obj.get("metadata") or {}).get("name", ""))
    requestor = str(spec.get("username") or "")
    usages = tuple(str(u) for u in spec.get("usages") or [])
    state = state_of(obj)
    try:
        request = parse_request(str(spec.get("request") or ""))
    except ValueError as exc:
        return CsrReview(name, requestor, None, usages, "unknown", state, False,
                         f"spec.request is not a PEM certificate request: {exc}")
    node = node_name_of(request.subject)
    kind = kind_of(usages, str(spec.get("signerName") or ""))
    problem = _problem(request, requestor, node, usages, kind,
                       str(spec.get("signerName") or ""), expected_nodes)
    reason = problem or _why_valid(kind, node, requestor)
    if state != "Pending":
        reason += f"; not approvable: already {state}"
    return CsrReview(name, requestor, node, usages, kind, state, problem is None, reason)


def parse_request(request_b64: str) -> x509.CertificateSigningRequest:
    try:
        pem = base64.b64decode(request_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64 ({exc})") from exc
    if b"-----BEGIN CERTIFICATE REQUEST-----" not in pem:
        raise ValueError("no BEGIN CERTIFICATE REQUEST block")
    try:
        return x509.load_pem_x509_csr(pem)
    except ValueError as exc:
        raise ValueError(f"it does not parse ({exc})") from exc


def node_name_of(subject: x509.Name) -> str | None:
    """`<name>` of CN=system:node:<name>, only when O is exactly system:nodes."""
    if _organizations(subject) != [NODES_GROUP]:
        return None
    cn = _common_name(subject)
    node = cn.removeprefix(NODE_PREFIX) if cn.startswith(NODE_PREFIX) else ""
    return node or None


def kind_of(usages: Iterable[str], signer: str) -> str:
    """By the extended usage asked for; by the signer when there is none; both: unknown."""
    wanted = set(usages)
    client, server = EXTENDED["client"] in wanted, EXTENDED["serving"] in wanted
    if client != server:
        return "client" if client else "serving"
    if not client:
        for kind, name in SIGNERS.items():
            if signer == name:
                return kind
    return "unknown"


def _problem(request: x509.CertificateSigningRequest, requestor: str, node: str | None,
             usages: tuple[str, ...], kind: str, signer: str,
             expected_nodes: set[str] | None) -> str | None:
    """The first reason the request is not a kubelet's own, or None."""
    if not request.is_signature_valid:
        return "the request's signature does not verify (it was altered or is forged)"
    organizations = _organizations(request.subject)
    if organizations != [NODES_GROUP]:
        shown = ",".join(organizations) or "(none)"
        return f"CSR subject is not O={NODES_GROUP} (it has O={shown})"
    if node is None:
        return (f"CSR subject CN {_common_name(request.subject)!r} is not "
                f"{NODE_PREFIX}<node name>")
    if kind == "unknown":
        return (f"usages [{', '.join(usages)}] with signerName {signer or '(none)'} are "
                "neither a kubelet client nor a kubelet serving request")
    requestor_node = requestor.removeprefix(NODE_PREFIX) \
        if requestor.startswith(NODE_PREFIX) else None
    if requestor_node is not None and requestor_node != node:
        return f"asks for node {node} but was requested by {requestor}"
    if kind == "serving" and requestor_node is None:
        return f"server auth usage from a non-node requestor {requestor or '(none)'}"
    if kind == "client" and requestor_node is None and requestor != BOOTSTRAPPER:
        return (f"a client certificate for node {node} requested by {requestor or '(none)'}, "
                f"which is neither the node-bootstrapper service account nor the node")
    if signer and signer != SIGNERS[kind]:
        return (f"signerName {signer} does not fit a kubelet {kind} request "
                f"(expected {SIGNERS[kind]})")
    required = {"digital signature", EXTENDED[kind]}
    if not required <= set(usages) or set(usages) - {*required, OPTIONAL_USAGE}:
        return (f"usages [{', '.join(usages)}] are not exactly digital signature, "
                f"{EXTENDED[kind]} (and optionally key encipherment)")
    san_problem = _san_problem(request, kind)
    if san_problem:
        return san_problem
    if expected_nodes is not None and node not in expected_nodes:
        return (f"node {node} is not one of the expected nodes "
                f"({', '.join(sorted(expected_nodes)) or 'none given'})")
    return None


def _san_problem(request: x509.CertificateSigningRequest, kind: str) -> str | None:
    try:
        sans = list(request.extensions.get_extension_for_class(x509.SubjectAlternativeName)
                    .value)
    except x509.ExtensionNotFound:
        sans = []
    if kind == "client":
        if sans:
            return ("a kubelet client certificate has no subjectAltName; this request "
                    f"asks for {', '.join(_san_text(s) for s in sans)}")
        return None
    odd = [s for s in sans if not isinstance(s, x509.DNSName | x509.IPAddress)]
    if odd:
        return ("a kubelet serving certificate names only DNS names and IPs; this request "
                f"also asks for {', '.join(_san_text(s) for s in odd)}")
    if not sans:
        return "a kubelet serving request must name at least one DNS name or IP (it has none)"
    return None


def _why_valid(kind: str, node: str | None, requestor: str) -> str:
    who = ("the node-bootstrapper service account" if requestor == BOOTSTRAPPER
           else "the node itself")
    return f"kubelet {kind} certificate for node {node}, requested by {who}"


def _organizations(subject: x509.Name) -> list[str]:
    return [str(a.value) for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]


def _common_name(subject: x509.Name) -> str:
    values = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


def _san_text(name: x509.GeneralName) -> str:
    label = {x509.DNSName: "DNS", x509.IPAddress: "IP", x509.RFC822Name: "email",
             x509.UniformResourceIdentifier: "URI"}.get(type(name), type(name).__name__)
    return f"{label}:{name.value}"
