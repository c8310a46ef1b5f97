"""The etcd certificate signer: the kube-etcd-signer-server HTTP API (reference spec §8.1),
with what the 4.3 signer lacked: a token, and certificates only for expected members.

POST /apis/certificates.k8s.io/v1beta1/certificatesigningrequests   sign (Bearer token)
GET  /apis/certificates.k8s.io/v1beta1/certificatesigningrequests/N the signed object
GET  /readyz                                                        200

A CSR is signed when the token matches, its signature verifies, its O and CN are one of the
three member profiles (system:etcd-peers / system:etcd-peer:<dns>, …), <dns> is an expected
member, its DNS SANs are those the profile allows, and that member has not yet got that kind.
Each member gets each kind once: the token is spent when every expected member has all three.
The same request again (same key, subject and SANs: an agent killed before it wrote what it
got) is answered with the certificate already issued, even once the token is spent.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import json
import ssl
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from toolbox import log
from toolbox.pki.certs import Issued, sign
from toolbox.pki.profiles import SERVICE_NAMES

_log = log.get(__name__)

API = "/apis/certificates.k8s.io/v1beta1/certificatesigningrequests"
LIFETIME_DAYS = 26280 / 24   # the 4.3 signer pod's --peercertdur/--servercertdur (3 years)
PROFILES = {"system:etcd-servers": "server", "system:etcd-peers": "peer",
            "system:etcd-metrics": "metric"}


class Refused(Exception):
    def __init__(self, status: HTTPStatus, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Signer:
    etcd_ca: Issued
    metric_ca: Issued
    token: str
    expected: set[str]            # the members' etcd DNS names, e.g. etcd-1.<domain>
    domain: str
    signed: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (member, kind) -> the certificate issued and the answer that carried it
    answers: dict[tuple[str, str], tuple[x509.Certificate, dict[str, Any]]] = field(
        default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def issued(self) -> dict[str, set[str]]:
        """Member -> the kinds of certificate it got."""
        kinds: dict[str, set[str]] = {}
        for member, kind in list(self.answers):  # a copy: handler threads add to it
            kinds.setdefault(member, set()).add(kind)
        return kinds

    @property
    def spent(self) -> bool:
        issued = self.issued
        return all(issued.get(d, set()) >= set(PROFILES.values()) for d in self.expected)

    def check_token(self, header: str | None) -> None:
        """The caller holds the token (spent or not: sign_request knows what it may get)."""
        given = (header or "").removeprefix("Bearer ").strip()
        if not given:
            raise Refused(HTTPStatus.UNAUTHORIZED, "no token")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            raise Refused(HTTPStatus.UNAUTHORIZED, "wrong token")

    def sign_request(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            name = str(body["metadata"]["name"])
            pem = base64.b64decode(body["spec"]["request"])
            csr = x509.load_pem_x509_csr(pem)
        except (KeyError, TypeError, ValueError) as exc:
            raise Refused(HTTPStatus.BAD_REQUEST, f"undecodable CSR object: {exc}") from exc
        if not csr.is_signature_valid:
            raise Refused(HTTPStatus.BAD_REQUEST, "the CSR's signature does not verify")
        orgs = csr.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
        cns = csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        org = str(orgs[0].value) if orgs else ""
        cn = str(cns[0].value) if cns else ""
        kind = PROFILES.get(org)
        prefix = f"system:etcd-{kind}:"
        if kind is None or not cn.startswith(prefix):
            raise Refused(HTTPStatus.BAD_REQUEST, f"O={org!r} CN={cn!r} is not an etcd member "
                          "profile")
        dns_name = cn.removeprefix(prefix)
        if dns_name not in self.expected:
            raise Refused(HTTPStatus.FORBIDDEN, f"{dns_name} is not a member this signer was "
                          "started for")
        try:
            sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            sans = x509.SubjectAlternativeName([])
        allowed = self._allowed_dns(kind, dns_name)
        extra = set(sans.get_values_for_type(x509.DNSName)) - allowed
        if extra:
            raise Refused(HTTPStatus.FORBIDDEN, f"DNS names {sorted(extra)} are not allowed in "
                          f"a {kind} certificate for {dns_name}")
        with self.lock:
            before = self.answers.get((dns_name, kind))
            if before is not None and _same_request(before[0], csr, sans):
                _log.info("signer.repeated", member=dns_name, kind=kind,
                          serial=f"{before[0].serial_number:x}")
                return before[1]
            if self.spent:
                raise Refused(HTTPStatus.UNAUTHORIZED, "token already used for every member")
            if before is not None:
                raise Refused(HTTPStatus.CONFLICT, f"{dns_name} already got its {kind} "
                              "certificate, for another key, subject or SANs")
            ca = self.metric_ca if kind == "metric" else self.etcd_ca
            cert = sign(ca, subject=csr.subject, public_key=csr.public_key(),
                        alt_names=list(sans), days=LIFETIME_DAYS)
            signed = {**body, "status": {
                "certificate": base64.b64encode(cert.public_bytes(
                    serialization.Encoding.PEM)).decode(),
                "conditions": [{"type": "Approved", "reason": "ocp-recovery signer",
                                "lastUpdateTime": dt.datetime.now(dt.UTC).isoformat()}]}}
            self.signed[name] = signed
            self.answers[(dns_name, kind)] = (cert, signed)
        _log.info("signer.issued", member=dns_name, kind=kind, serial=f"{cert.serial_number:x}")
        return signed

    def _allowed_dns(self, kind: str, dns_name: str) -> set[str]:
        if kind == "server":
            return {"localhost", *SERVICE_NAMES, f"*.{self.domain}"}
        if kind == "peer":
            return {dns_name, self.domain}
        return {"localhost", *SERVICE_NAMES, dns_name, f"*.{self.domain}"}


def _same_request(cert: x509.Certificate, csr: x509.CertificateSigningRequest,
                  sans: x509.SubjectAlternativeName) -> bool:
    """`cert` is what `csr` asks for: the same public key, subject and SANs."""
    def spki(key: Any) -> bytes:
        return key.public_bytes(serialization.Encoding.DER,  # type: ignore[no-any-return]
                                serialization.PublicFormat.SubjectPublicKeyInfo)

    try:
        issued = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:  # sign() adds none for a CSR without SANs
        issued = set()
    return spki(cert.public_key()) == spki(csr.public_key()) and \
        cert.subject == csr.subject and issued == set(sans)


def _handler(signer: Signer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "ocp-recovery-signer"

        def log_message(self, format: str, *args: Any) -> None:
            return  # requests are logged by our own events, without headers (the token)

        def _reply(self, status: HTTPStatus, body: bytes, kind: str = "application/json"
                   ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _refuse(self, refused: Refused) -> None:
            _log.warning("signer.refused", path=self.path, status=int(refused.status),
                         reason=refused.reason, client=self.client_address[0])
            self._reply(refused.status, f"Error signing csr: {refused.reason}\n".encode(),
                        "text/plain")

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            if self.path == "/readyz":
                self._reply(HTTPStatus.OK, b"ok", "text/plain")
                return
            try:
                signer.check_token(self.headers.get("Authorization"))
            except Refused as refused:
                self._refuse(refused)
                return
            name = self.path.removeprefix(API + "/")
            found = signer.signed.get(name) if self.path.startswith(API + "/") else None
            if found is None:
                self._reply(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
                return
            self._reply(HTTPStatus.OK, json.dumps(found).encode())

        def do_POST(self) -> None:
            try:
                if self.path.rstrip("/") != API:
                    raise Refused(HTTPStatus.NOT_FOUND, f"no such path {self.path}")
                signer.check_token(self.headers.get("Authorization"))
                length = int(self.headers.get("Content-Length") or 0)
                if length > 1 << 20:
                    raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request too large")
                try:
                    body = json.loads(self.rfile.read(length))
                except ValueError as exc:
                    raise Refused(HTTPStatus.BAD_REQUEST, f"body is not JSON: {exc}") from exc
                signed = signer.sign_request(body)
            except Refused as refused:
                self._refuse(refused)
                return
            self._reply(HTTPStatus.OK, json.dumps(signed).encode())

    return Handler


def make_server(signer: Signer, address: tuple[str, int], serving_cert: Path,
                serving_key: Path) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(address, _handler(signer))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(serving_cert, serving_key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return server
