"""Request this member's etcd certificates from the signer (the kube-client-agent's job,
reference spec §8.2), and keep them only if they verify.

Nothing goes into the member directory until every certificate is got and verifies: each
certificate's key is made once and kept 0600 in a pending directory, and the signer's answer
is written beside it the moment it arrives. A run that fails before the last answer leaves
the member directory untouched; a run killed at any point asks again only for what it has
not kept (with the same key and the same subject and SANs, which the signer answers with the
certificate it already issued: toolbox/pki/signer.py), so even a kill right after the last
answer, the signer gone with its token spent, loses nothing."""

from __future__ import annotations

import base64
import datetime as dt
import errno
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization

from toolbox import log
from toolbox.errors import IntegrityError, PreconditionFailed
from toolbox.host.files import atomic_write, ensure_private_dir, remove_empty_tree
from toolbox.pki.certs import PrivateKey, key_pem, load_certificates, new_key, subject_alt_names
from toolbox.pki.profiles import CertRequest
from toolbox.pki.signer import API

_log = log.get(__name__)

SIGNER_SERVE = "ocp-recovery signer serve"
AGAIN = "then run the same command again"


@dataclass(frozen=True)
class SignerEndpoint:
    url: str          # https://<signer ip>:9943
    token: str        # "" when none was given: enough while nothing is left to ask for
    ca_bundle: bytes  # the etcd CA: the signer serves with a member's server certificate
    timeout: float


@dataclass(frozen=True)
class _Pair:
    request: CertRequest
    key: PrivateKey
    cert_pem: bytes


def request_certificates(signer: SignerEndpoint, requests: Sequence[CertRequest],
                         cas: Mapping[str, bytes], member_dir: Path, pending: Path) -> None:
    """Every certificate of `requests` that `member_dir` lacks, from the signer, then the
    pairs (key 0600, cert 0644) into `member_dir`. Each must chain to its CA (`cas` by
    `request.signer`), carry the requested subject and SANs and match its key. Until all of
    them do, only `pending` (ours) changes."""
    pairs = []
    for request in requests:
        if _in_place(request, member_dir, cas[request.signer]):
            _discard(pending, request)  # killed after it wrote the pair, before this
        else:
            pairs.append(_pending_pair(signer, request, cas[request.signer], pending))
    _install(pairs, member_dir)
    for pair in pairs:
        _discard(pending, pair.request)
    remove_empty_tree(pending)


def _pending_pair(signer: SignerEndpoint, request: CertRequest, ca_pem: bytes,
                  pending: Path) -> _Pair:
    """The pair of one certificate: the answer a run before kept if it still verifies, else
    a CSR to the signer, its answer kept as it arrives."""
    key = _pending_key(_key_path(pending, request))
    answer = _answer_path(pending, request)
    if answer.is_file():
        try:
            pem = _certificate_in(json.loads(answer.read_bytes()), request, key, ca_pem,
                                  signer)
            _log.info("agent.kept_certificate", kind=request.kind, cn=request.common_name)
            return _Pair(request, key, pem)
        except (IntegrityError, ValueError) as exc:
            _log.warning("agent.kept_answer_discarded", kind=request.kind, error=str(exc))
            answer.unlink()
    if not signer.token:
        raise PreconditionFailed(
            f"no signer token to ask {signer.url} for the {request.kind} certificate of "
            f"{request.common_name.rpartition(':')[2]}",
            next_step=f"export OCP_RECOVERY_SIGNER_TOKEN=<the token `{SIGNER_SERVE}` printed "
            f"on the survivor>; {AGAIN}")
    try:
        pem = _certificate_in(_post(signer, request, _csr_body(request, key), answer),
                              request, key, ca_pem, signer)
    except IntegrityError:
        answer.unlink(missing_ok=True)  # not a certificate to use: the next run asks again
        raise
    _log.info("agent.certificate", kind=request.kind, cn=request.common_name)
    return _Pair(request, key, pem)


def _install(pairs: list[_Pair], member_dir: Path) -> None:
    """Every pair written in place, or, when a write fails (a full disk), the member
    directory given back as it was: what was there written back, what was not removed."""
    before: dict[Path, tuple[bytes, int] | None] = {}
    try:
        for pair in pairs:
            stem = member_dir / pair.request.file_stem
            for path, data, mode in ((stem.with_name(stem.name + ".key"), key_pem(pair.key),
                                      0o600),
                                     (stem.with_name(stem.name + ".crt"), pair.cert_pem,
                                      0o644)):
                before[path] = (path.read_bytes(), path.stat().st_mode & 0o7777) \
                    if path.is_file() else None
                atomic_write(path, data, mode=mode)
    except BaseException:
        for path, was in before.items():
            if was is None:
                path.unlink(missing_ok=True)
            else:
                atomic_write(path, was[0], mode=was[1])
        raise
    for pair in pairs:
        _log.info("agent.installed", kind=pair.request.kind, cn=pair.request.common_name)


def _in_place(request: CertRequest, member_dir: Path, ca_pem: bytes) -> bool:
    """The member directory already holds a pair that verifies, as this request asks."""
    stem = member_dir / request.file_stem
    try:
        key = serialization.load_pem_private_key(
            stem.with_name(stem.name + ".key").read_bytes(), None)
        [cert, *_] = load_certificates(stem.with_name(stem.name + ".crt").read_bytes())
        _verify(cert, request, key, ca_pem)
    except (OSError, ValueError, TypeError, IntegrityError):
        return False
    return True


def _certificate_in(answer: Any, request: CertRequest, key: PrivateKey, ca_pem: bytes,
                    signer: SignerEndpoint) -> bytes:
    """The certificate PEM of the signer's answer, once it verifies."""
    try:
        pem = base64.b64decode(answer["status"]["certificate"])
        [cert, *_] = load_certificates(pem)
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(f"the signer's answer for {request.common_name} holds no "
                             "PEM certificate in status.certificate",
                             next_step=f"check that `{SIGNER_SERVE}` is what listens at "
                             f"{signer.url}; {AGAIN}") from exc
    _verify(cert, request, key, ca_pem)
    return pem


def _csr_body(request: CertRequest, key: PrivateKey) -> dict[str, Any]:
    sans = subject_alt_names(request.dns_names, request.ip_addresses)
    csr = (x509.CertificateSigningRequestBuilder().subject_name(_subject(request))
           .add_extension(x509.SubjectAlternativeName(sans), critical=False)
           .sign(key, hashes.SHA256()))
    return {
        "apiVersion": "certificates.k8s.io/v1beta1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": request.common_name},
        "spec": {"request": base64.b64encode(csr.public_bytes(serialization.Encoding.PEM))
                 .decode(),
                 "usages": ["digital signature", "key encipherment", "server auth",
                            "client auth"]},
    }


def _discard(pending: Path, request: CertRequest) -> None:
    """Forget the kept key and answer of a certificate now in place."""
    _answer_path(pending, request).unlink(missing_ok=True)
    _key_path(pending, request).unlink(missing_ok=True)


def _key_path(pending: Path, request: CertRequest) -> Path:
    return pending / f"{request.file_stem}.key"


def _answer_path(pending: Path, request: CertRequest) -> Path:
    return pending / f"{request.file_stem}.answer.json"


def _pending_key(path: Path) -> PrivateKey:
    """The key of one certificate: the one a run before kept, else a new one, written
    before the signer sees its CSR."""
    if path.is_file():
        return serialization.load_pem_private_key(path.read_bytes(), None)  # type: ignore[return-value]
    ensure_private_dir(path.parent)
    key = new_key("rsa")
    atomic_write(path, key_pem(key), mode=0o600)
    return key


def _subject(request: CertRequest) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, request.organization),
        x509.NameAttribute(x509.NameOID.COMMON_NAME, request.common_name)])


def _post(signer: SignerEndpoint, request: CertRequest, body: dict[str, Any], answer: Path
          ) -> dict[str, Any]:
    """The signer's answer to one CSR, written to `answer` (0600) as it arrives: the
    signer may stop once it has sent it. Every failure said in words, with what to do."""
    context = ssl.create_default_context(cadata=signer.ca_bundle.decode())
    # The signer serves with a member's server certificate: IP SANs, checked by the CA.
    http = urllib.request.Request(
        signer.url.rstrip("/") + API, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json",
                 "Authorization": f"Bearer {signer.token}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(http, timeout=signer.timeout) as reply:
            text = reply.read()
    except urllib.error.HTTPError as exc:
        raise _refused(signer, request, exc) from None
    except urllib.error.URLError as exc:
        raise _unreachable(signer, exc.reason) from None
    except OSError as exc:  # a timeout or a reset while the answer was read
        raise _unreachable(signer, exc) from None
    atomic_write(answer, text, mode=0o600)
    try:
        return json.loads(text)  # type: ignore[no-any-return]
    except ValueError:
        raise IntegrityError(f"the answer of {signer.url} to the {request.kind} request is not "
                             f"JSON: is `{SIGNER_SERVE}` what listens there?",
                             next_step=f"check the signer IP, {AGAIN}") from None


def _unreachable(signer: SignerEndpoint, reason: object) -> PreconditionFailed:
    """No answer: which of refused, timed out, TLS not trusted, no route."""
    host = urllib.parse.urlsplit(signer.url).hostname
    start = (f"on the surviving master {host}, start `{SIGNER_SERVE} --expect <this "
             "master's etcd DNS name>` (it prints the token), or give the IP of the master "
             f"where it runs; {AGAIN}")
    if isinstance(reason, ConnectionRefusedError):
        return PreconditionFailed(
            f"connection refused at {signer.url}: nothing listens there. Is "
            f"`{SIGNER_SERVE}` running on {host}, and is {host} the right IP?",
            next_step=start)
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return PreconditionFailed(
            f"no answer from {signer.url} within {signer.timeout:.0f}s (timed out): is {host} "
            f"the right IP, and does a firewall let this master reach port 9943 there?",
            next_step=f"check the IP and that port 9943 of {host} is reachable from this "
            f"master (`{SIGNER_SERVE}` listens there); {AGAIN}")
    if isinstance(reason, ssl.SSLCertVerificationError):
        if "mismatch" in (reason.verify_message or ""):
            trust = f"it is signed by this cluster's etcd CA but not issued for {host}"
        else:
            trust = "it is not from this host's etcd CA (etcd-member/ca.crt)"
        return PreconditionFailed(
            f"TLS verification of the signer at {signer.url} failed: {trust}. Is it this "
            "cluster's signer?",
            next_step=f"give the IP of a master of this cluster that runs `{SIGNER_SERVE}`, "
            f"and check that etcd-member/ca.crt on this host is the cluster's etcd CA; {AGAIN}")
    if isinstance(reason, ssl.SSLError):
        return PreconditionFailed(
            f"the TLS handshake with {signer.url} failed ({reason.reason or 'no reason given'}"
            f"): is `{SIGNER_SERVE}` what listens there?", next_step=start)
    if isinstance(reason, OSError) and reason.errno in (errno.EHOSTUNREACH,
                                                        errno.ENETUNREACH):
        return PreconditionFailed(f"no route from this master to {host}: is the IP right?",
                                  next_step=start)
    detail = reason.strerror if isinstance(reason, OSError) and reason.strerror else \
        type(reason).__name__
    return PreconditionFailed(
        f"the signer at {signer.url} could not be reached ({detail}): is `{SIGNER_SERVE}` "
        f"running on {host}, and is the IP right?", next_step=start)


def _refused(signer: SignerEndpoint, request: CertRequest,
             exc: urllib.error.HTTPError) -> PreconditionFailed:
    """The signer answered with a refusal: what it means for this member."""
    try:
        said = exc.read().decode(errors="replace")
    except OSError:
        said = ""
    said = " ".join(said.removeprefix("Error signing csr:").split())[:200] or exc.reason
    dns_name = request.common_name.rpartition(":")[2]
    if exc.code == 401:
        return PreconditionFailed(
            f"the signer at {signer.url} refused the token ({said}): the token is wrong, or "
            "it was spent on every member the signer was started for",
            next_step=f"export OCP_RECOVERY_SIGNER_TOKEN=<the token `{SIGNER_SERVE}` printed "
            "on the survivor>; if that signer has stopped, start it again for this master "
            f"(it prints a new token); {AGAIN}")
    if exc.code == 403:
        return PreconditionFailed(
            f"the signer at {signer.url} refused the {request.kind} certificate of "
            f"{dns_name} ({said}): the signer was not started for this name",
            next_step=f"on the survivor, start `{SIGNER_SERVE} --expect {dns_name}` (this "
            f"master's etcd DNS name) and export the token it prints; {AGAIN}")
    if exc.code == 409:
        return PreconditionFailed(
            f"the signer at {signer.url} already issued the {request.kind} certificate of "
            f"{dns_name} for another key ({said})",
            next_step=f"start `{SIGNER_SERVE} --expect {dns_name}` again on the survivor (a "
            f"new signer and token) and export the token it prints; {AGAIN}")
    if exc.code == 404:
        return PreconditionFailed(
            f"{signer.url} has no certificate signing API (HTTP 404): is `{SIGNER_SERVE}` "
            "what listens there?", next_step=f"check the signer IP; {AGAIN}")
    return PreconditionFailed(
        f"the signer at {signer.url} refused the {request.kind} request of {dns_name} "
        f"(HTTP {exc.code}: {said})",
        next_step=f"read the signer's log on the survivor (event signer.refused); {AGAIN}")


def _verify(cert: x509.Certificate, request: CertRequest, key: object, ca_pem: bytes) -> None:
    problems = []
    if not any(cert.issuer == ca.subject and _signed_by(cert, ca)
               for ca in load_certificates(ca_pem)):
        problems.append("it does not chain to the etcd CA on this host")
    if cert.subject.rfc4514_string() != _subject(request).rfc4514_string():
        problems.append(f"its subject is {cert.subject.rfc4514_string()}")
    public = key.public_key()  # type: ignore[attr-defined]
    if cert.public_key().public_bytes(serialization.Encoding.DER,
                                      serialization.PublicFormat.SubjectPublicKeyInfo) != \
            public.public_bytes(serialization.Encoding.DER,
                                serialization.PublicFormat.SubjectPublicKeyInfo):
        problems.append("it is for another key")
    try:
        sans = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        sans = set()
    if sans != set(subject_alt_names(request.dns_names, request.ip_addresses)):
        problems.append("its SANs differ from the request")
    if cert.not_valid_after_utc <= dt.datetime.now(dt.UTC):
        problems.append(f"it expired {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    if problems:
        raise IntegrityError(f"the signer's {request.kind} certificate was refused: "
                             + "; ".join(problems),
                             state="unchanged: nothing was written into the member directory")


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False
