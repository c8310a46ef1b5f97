"""Requests the signer must refuse, over real HTTPS: no token or a wrong one, an identity or
profile it was not started for, a CSR whose signature does not verify, a second certificate
of a kind; each refusal names its reason and logs no token and no key."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.reliability.signing import MEMBER, PEER, TOKEN, csr_body, get, post, serve_signer
from toolbox.pki.signer import API, Signer

pytestmark = pytest.mark.hostile("signer")


@pytest.fixture
def signer(tmp_path: Path) -> Iterator[tuple[Signer, str, bytes]]:
    with serve_signer(tmp_path) as running:
        yield running


@pytest.mark.parametrize(("body", "token", "status", "reason"), [
    pytest.param(csr_body(*PEER), None, 401, "no token", id="no-token"),
    pytest.param(csr_body(*PEER), "guess", 401, "wrong token", id="wrong-token"),
    pytest.param(csr_body(*PEER), TOKEN[:-1], 401, "wrong token", id="token-prefix"),
    pytest.param(csr_body(*PEER), TOKEN + "x", 401, "wrong token", id="token-extended"),
    pytest.param(csr_body("system:etcd-peer:etcd-9.example.test", "system:etcd-peers",
                          ["etcd-9.example.test"], ["10.0.0.9"]), TOKEN, 403, "not a member",
                 id="unexpected-identity"),
    pytest.param(csr_body(f"system:etcd-server:{MEMBER}", "system:etcd-peers", [MEMBER], []),
                 TOKEN, 400, "not an etcd member profile", id="cn-of-another-profile"),
    pytest.param(csr_body(f"system:etcd-peer:{MEMBER}", "system:masters", [MEMBER], []),
                 TOKEN, 400, "not an etcd member profile", id="system-masters"),
    pytest.param(csr_body(f"system:etcd-peer:{MEMBER}", "system:etcd-peers",
                          [MEMBER, "evil.com"], []), TOKEN, 403, "not allowed",
                 id="extra-dns-name"),
    pytest.param({"metadata": {"name": "x"}, "spec": {"request": "bm90IGEgY3Ny"}}, TOKEN, 400,
                 "undecodable", id="not-a-csr"),
    pytest.param(b"{not json", TOKEN, 400, "body is not JSON", id="not-json"),
])
def test_refusals(signer: tuple[Signer, str, bytes], body: dict | bytes,  # type: ignore[type-arg]
                  token: str | None, status: int, reason: str,
                  capsys: pytest.CaptureFixture[str]) -> None:
    the_signer, url, ca = signer
    got, text = post(url, ca, body, token)
    assert got == status and reason in text
    assert the_signer.issued == {}
    logged = capsys.readouterr()
    assert TOKEN not in logged.err + logged.out
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
    got, text = post(url, ca, body, TOKEN)
    assert got == 400 and "signature does not verify" in text


def test_each_kind_is_issued_once(signer: tuple[Signer, str, bytes]) -> None:
    _, url, ca = signer
    assert post(url, ca, csr_body(*PEER), TOKEN)[0] == 200
    got, text = post(url, ca, csr_body(*PEER), TOKEN)
    assert got == 409 and "already got its peer" in text


@pytest.mark.parametrize(("token", "reason"), [(None, "no token"), ("guess", "wrong token")])
def test_an_issued_certificate_is_not_read_without_the_token(
        signer: tuple[Signer, str, bytes], token: str | None, reason: str) -> None:
    _, url, ca = signer
    status, text = post(url, ca, csr_body(*PEER), TOKEN)
    assert status == 200
    name = json.loads(text)["metadata"]["name"]
    assert get(url, ca, f"{API}/{name}", TOKEN)[0] == 200
    got, text = get(url, ca, f"{API}/{name}", token)
    assert got == 401 and reason in text and "BEGIN CERTIFICATE" not in text
