"""Request this member's etcd certificates from the signer (the kube-client-agent's job,
reference spec §8.2), and keep them only if they verify."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization

from toolbox import log
from toolbox.errors import IntegrityError, PreconditionFailed
from toolbox.host.files import atomic_write
from toolbox.pki.certs import key_pem, load_certificates, new_key, subject_alt_names
from toolbox.pki.profiles import CertRequest
from toolbox.pki.signer import API

_log = log.get(__name__)


@dataclass(frozen=True)
class SignerEndpoint:
    url: str          # https://<signer ip>:9943
    token: str
    ca_bundle: bytes  # the etcd CA: the signer serves with a member's server certificate
    timeout: float


def request_certificate(signer: SignerEndpoint, request: CertRequest, member_dir: Path,
                        ca_pem: bytes) -> Path:
    """One CSR to the signer; the answer must chain to `ca_pem`, carry the requested
    subject and SANs and match our key; then key (0600) and cert (0644) are written."""
    key = new_key("rsa")
    subject = x509.Name([x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME,
                                            request.organization),
                         x509.NameAttribute(x509.NameOID.COMMON_NAME, request.common_name)])
    sans = subject_alt_names(request.dns_names, request.ip_addresses)
    csr = (x509.CertificateSigningRequestBuilder().subject_name(subject)
           .add_extension(x509.SubjectAlternativeName(sans), critical=False)
           .sign(key, hashes.SHA256()))
    body = {
        "apiVersion": "certificates.k8s.io/v1beta1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": request.common_name},
        "spec": {"request": base64.b64encode(csr.public_bytes(serialization.Encoding.PEM))
                 .decode(),
                 "usages": ["digital signature", "key encipherment", "server auth",
                            "client auth"]},
    }
    answer = _post(signer, body)
    try:
        pem = base64.b64decode(answer["status"]["certificate"])
        [cert, *_] = load_certificates(pem)
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(f"the signer's answer for {request.common_name} holds no "
                             f"certificate: {exc}") from exc
    _verify(cert, request, key, ca_pem)
    stem = member_dir / request.file_stem
    atomic_write(stem.with_name(stem.name + ".key"), key_pem(key),  # type: ignore[arg-type]
                 mode=0o600)
    crt = stem.with_name(stem.name + ".crt")
    atomic_write(crt, pem, mode=0o644)
    _log.info("agent.certificate", kind=request.kind, cn=request.common_name,
              not_after=cert.not_valid_after_utc.isoformat())
    return crt


def _post(signer: SignerEndpoint, body: dict[str, Any]) -> dict[str, Any]:
    context = ssl.create_default_context(cadata=signer.ca_bundle.decode())
    # The signer serves with a member's server certificate: IP SANs, checked by the CA.
    request = urllib.request.Request(
        signer.url.rstrip("/") + API, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json",
                 "Authorization": f"Bearer {signer.token}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(request, timeout=signer.timeout) as reply:
            return json.loads(reply.read())  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:
        reason = exc.read().decode(errors="replace").strip()
        raise PreconditionFailed(
            f"the signer at {signer.url} refused the request ({exc.code}): {reason}",
            next_step="check the token and that the signer was started for this member "
            "(ocp-recovery signer serve --expect <this master's etcd DNS name>)") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise PreconditionFailed(
            f"the signer at {signer.url} is unreachable: {exc}",
            next_step="start it on the survivor (ocp-recovery signer serve …) and check "
            "that port 9943 is reachable from this master") from exc


def _verify(cert: x509.Certificate, request: CertRequest, key: object, ca_pem: bytes) -> None:
    problems = []
    if not any(cert.issuer == ca.subject and _signed_by(cert, ca)
               for ca in load_certificates(ca_pem)):
        problems.append("it does not chain to the etcd CA on this host")
    if cert.subject.rfc4514_string() != x509.Name([
            x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, request.organization),
            x509.NameAttribute(x509.NameOID.COMMON_NAME, request.common_name)]
            ).rfc4514_string():
        problems.append(f"its subject is {cert.subject.rfc4514_string()}")
    public = key.public_key()  # type: ignore[attr-defined]
    if cert.public_key().public_bytes(serialization.Encoding.DER,
                                      serialization.PublicFormat.SubjectPublicKeyInfo) != \
            public.public_bytes(serialization.Encoding.DER,
                                serialization.PublicFormat.SubjectPublicKeyInfo):
        problems.append("it is for another key")
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    if set(sans) != set(subject_alt_names(request.dns_names, request.ip_addresses)):
        problems.append("its SANs differ from the request")
    if problems:
        raise IntegrityError(f"the signer's {request.kind} certificate was refused: "
                             + "; ".join(problems), state="unchanged: nothing was written")


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False
