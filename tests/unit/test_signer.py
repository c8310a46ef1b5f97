"""The signer over real HTTPS: it signs only for the token holder, only the expected
members, only the 4.3 profiles, each certificate once; refusals log no key material."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from toolbox.pki import certs
from toolbox.pki.agent import SignerEndpoint, request_certificate
from toolbox.pki.profiles import member_cert_requests
from toolbox.pki.signer import API, Signer, make_server

DOMAIN = "example.test"
MEMBER = f"etcd-1.{DOMAIN}"


@pytest.fixture
def signer(tmp_path: Path) -> Iterator[tuple[Signer, str, bytes]]:
    etcd_ca, metric_ca = certs.self_signed_ca("etcd-signer"), certs.self_signed_ca("metric")
    serving = certs.issue(etcd_ca, common_name="system:etcd-server:etcd-0", ip_addresses=[
        "127.0.0.1"])
    (tmp_path / "s.crt").write_bytes(serving.cert_pem())
    (tmp_path / "s.key").write_bytes(serving.key_pem())
    the_signer = Signer(etcd_ca, metric_ca, "secret-token", {MEMBER}, DOMAIN)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = make_server(the_signer, ("127.0.0.1", port), tmp_path / "s.crt",
                         tmp_path / "s.key")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield the_signer, f"https://127.0.0.1:{port}", etcd_ca.cert_pem()
    server.shutdown()
    server.server_close()


def csr_body(cn: str, org: str, dns: list[str], ips: list[str]) -> dict:  # type: ignore[type-arg]
    key = certs.new_key()
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, org),
                                    x509.NameAttribute(x509.NameOID.COMMON_NAME, cn)]))
           .add_extension(x509.SubjectAlternativeName(certs.subject_alt_names(dns, ips)),
                          critical=False)
           .sign(key, hashes.SHA256()))
    return {"metadata": {"name": cn}, "spec": {"request": base64.b64encode(
        csr.public_bytes(serialization.Encoding.PEM)).decode()}}


def post(url: str, ca: bytes, body: dict, token: str | None) -> tuple[int, str]:  # type: ignore[type-arg]
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url + API, json.dumps(body).encode(), headers)
    context = ssl.create_default_context(cadata=ca.decode())
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


PEER = (f"system:etcd-peer:{MEMBER}", "system:etcd-peers", [MEMBER, DOMAIN], ["10.0.0.6"])


def test_agent_gets_three_verified_certificates_then_the_token_is_spent(
        signer: tuple[Signer, str, bytes], tmp_path: Path) -> None:
    the_signer, url, ca = signer
    endpoint = SignerEndpoint(url, "secret-token", ca, 10)
    cas = {"etcd": ca, "metric": the_signer.metric_ca.cert_pem()}
    for request in member_cert_requests(MEMBER, "10.0.0.6", DOMAIN):
        crt = request_certificate(endpoint, request, tmp_path, cas[request.signer])
        [cert] = certs.load_certificates(crt.read_bytes())
        issuer = the_signer.metric_ca if request.signer == "metric" else the_signer.etcd_ca
        cert.verify_directly_issued_by(issuer.cert)
        assert oct((tmp_path / f"{request.file_stem}.key").stat().st_mode & 0o777) == "0o600"
    assert the_signer.spent
    status, text = post(url, ca, csr_body(*PEER), "secret-token")
    assert status == 401 and "already used" in text


@pytest.mark.parametrize(("body", "token", "status", "reason"), [
    (csr_body(*PEER), None, 401, "no token"),
    (csr_body(*PEER), "guess", 401, "wrong token"),
    (csr_body("system:etcd-peer:etcd-9.example.test", "system:etcd-peers",
              ["etcd-9.example.test"], ["10.0.0.9"]), "secret-token", 403, "not a member"),
    (csr_body(f"system:etcd-server:{MEMBER}", "system:etcd-peers", [MEMBER], []),
     "secret-token", 400, "not an etcd member profile"),
    (csr_body(f"system:etcd-peer:{MEMBER}", "system:masters", [MEMBER], []),
     "secret-token", 400, "not an etcd member profile"),
    (csr_body(f"system:etcd-peer:{MEMBER}", "system:etcd-peers", [MEMBER, "evil.com"], []),
     "secret-token", 403, "not allowed"),
    ({"metadata": {"name": "x"}, "spec": {"request": "bm90IGEgY3Ny"}}, "secret-token", 400,
     "undecodable"),
])
def test_refusals(signer: tuple[Signer, str, bytes], body: dict, token: str | None,  # type: ignore[type-arg]
                  status: int, reason: str, capsys: pytest.CaptureFixture[str]) -> None:
    _, url, ca = signer
    got, text = post(url, ca, body, token)
    assert got == status and reason in text
    logged = capsys.readouterr()
    assert "secret-token" not in logged.err + logged.out
    assert "PRIVATE KEY" not in logged.err + logged.out


def test_a_tampered_csr_signature_is_refused(signer: tuple[Signer, str, bytes]) -> None:
    _, url, ca = signer
    body = csr_body(*PEER)
    pem = bytearray(base64.b64decode(body["spec"]["request"]))
    der = x509.load_pem_x509_csr(bytes(pem)).public_bytes(serialization.Encoding.DER)
    tampered = bytearray(der)
    tampered[-10] ^= 0x01  # inside the signature
    body["spec"]["request"] = base64.b64encode(
        x509.load_der_x509_csr(bytes(tampered)).public_bytes(serialization.Encoding.PEM)
    ).decode()
    got, text = post(url, ca, body, "secret-token")
    assert got == 400 and "signature does not verify" in text


def test_each_kind_is_issued_once(signer: tuple[Signer, str, bytes]) -> None:
    _, url, ca = signer
    assert post(url, ca, csr_body(*PEER), "secret-token")[0] == 200
    got, text = post(url, ca, csr_body(*PEER), "secret-token")
    assert got == 409 and "already got its peer" in text
