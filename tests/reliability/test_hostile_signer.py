"""Requests the signer must refuse, over real HTTPS: no token or a wrong one, an identity or
profile it was not started for, a CSR whose signature does not verify, a second certificate
of a kind (but the same request again gets the certificate already issued); each refusal
names its reason and logs no token and no key. And what the agent says, in words, when the
signer is not there, does not answer, is not trusted or refuses."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.reliability.signing import (
    DOMAIN,
    MEMBER,
    PEER,
    TOKEN,
    csr_body,
    get,
    post,
    serve_signer,
)
from toolbox.errors import PreconditionFailed
from toolbox.pki import certs
from toolbox.pki.agent import SignerEndpoint, request_certificates
from toolbox.pki.profiles import CertRequest, member_cert_requests
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


# ---- a repeated request: an agent killed after the signer answered asks again ----------------
def test_the_same_request_again_gets_the_certificate_already_issued(
        signer: tuple[Signer, str, bytes]) -> None:
    _, url, ca = signer
    key = certs.new_key()
    first = post(url, ca, csr_body(*PEER, key=key), TOKEN)
    again = post(url, ca, csr_body(*PEER, key=key), TOKEN)
    assert first[0] == again[0] == 200
    assert _certificate(again[1]) == _certificate(first[1])


@pytest.mark.parametrize(("body", "token", "status", "reason"), [
    pytest.param(lambda key: csr_body(*PEER), TOKEN, 409, "already got its peer",
                 id="another-key"),
    pytest.param(lambda key: csr_body(PEER[0], PEER[1], [MEMBER], PEER[3], key=key), TOKEN,
                 409, "already got its peer", id="same-key-other-sans"),
    pytest.param(lambda key: csr_body(*PEER, key=key), "guess", 401, "wrong token",
                 id="same-request-wrong-token"),
])
def test_a_repeat_that_is_not_the_same_request_is_refused(
        signer: tuple[Signer, str, bytes], body: Callable[[certs.PrivateKey], dict],  # type: ignore[type-arg]
        token: str, status: int, reason: str) -> None:
    _, url, ca = signer
    key = certs.new_key()
    issued = post(url, ca, csr_body(*PEER, key=key), TOKEN)
    assert issued[0] == 200
    got, text = post(url, ca, body(key), token)
    assert got == status and reason in text and "BEGIN CERTIFICATE" not in base64_text(text)


def test_once_the_token_is_spent_only_the_same_request_is_answered(
        signer: tuple[Signer, str, bytes]) -> None:
    the_signer, url, ca = signer
    keys = {request.kind: certs.new_key() for request in member_cert_requests(
        MEMBER, "10.0.0.6", DOMAIN)}
    answers = {r.kind: post(url, ca, _body(r, keys[r.kind]), TOKEN)
               for r in member_cert_requests(MEMBER, "10.0.0.6", DOMAIN)}
    assert the_signer.spent and {a[0] for a in answers.values()} == {200}
    [metric] = [r for r in member_cert_requests(MEMBER, "10.0.0.6", DOMAIN)
                if r.kind == "metric"]
    status, text = post(url, ca, _body(metric, keys["metric"]), TOKEN)
    assert status == 200 and _certificate(text) == _certificate(answers["metric"][1])
    status, text = post(url, ca, _body(metric, certs.new_key()), TOKEN)
    assert status == 401 and "already used" in text


def _body(request: CertRequest, key: certs.PrivateKey) -> dict:  # type: ignore[type-arg]
    return csr_body(request.common_name, request.organization, list(request.dns_names),
                    list(request.ip_addresses), key=key)


def _certificate(answer: str) -> bytes:
    return base64.b64decode(json.loads(answer)["status"]["certificate"])


def base64_text(text: str) -> str:
    """A refusal is plain text; an answer would carry the certificate base64-encoded."""
    try:
        return base64.b64decode(json.loads(text)["status"]["certificate"]).decode()
    except (ValueError, KeyError, TypeError):
        return text


# ---- what the agent says when the signer cannot be used ---------------------------------------
INTERNALS = ("Errno", "urlopen", "Traceback", "URLError", "SSLError", "object at 0x")


def agent_error(endpoint: SignerEndpoint, tmp_path: Path, ca: bytes,
                dns_name: str = MEMBER) -> PreconditionFailed:
    [server, *_] = member_cert_requests(dns_name, "10.0.0.6", DOMAIN)
    with pytest.raises(PreconditionFailed) as failed:
        request_certificates(endpoint, [server], {"etcd": ca}, tmp_path / "member",
                             tmp_path / "pending")
    rendered = failed.value.render()
    assert not [word for word in INTERNALS if word in rendered], rendered
    assert not (tmp_path / "member").exists(), "nothing is written when the signer refuses"
    return failed.value


def test_nothing_listening_at_the_signer_address(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on once this closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ca = certs.self_signed_ca("etcd-signer").cert_pem()
    error = agent_error(SignerEndpoint(f"https://127.0.0.1:{port}", TOKEN, ca, 5), tmp_path,
                        ca)
    assert f"connection refused at https://127.0.0.1:{port}" in error.what
    assert "Is `ocp-recovery signer serve` running on 127.0.0.1" in error.what
    assert "the right IP" in error.what and "signer serve --expect" in error.next_step


def test_a_signer_that_does_not_answer(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts the connection, never speaks TLS
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"https://127.0.0.1:{silent.getsockname()[1]}"
        ca = certs.self_signed_ca("etcd-signer").cert_pem()
        error = agent_error(SignerEndpoint(url, TOKEN, ca, 0.5), tmp_path, ca)
    assert f"no answer from {url} within" in error.what and "timed out" in error.what
    assert "port 9943" in error.next_step


def test_a_wrong_token(signer: tuple[Signer, str, bytes], tmp_path: Path) -> None:
    _, url, ca = signer
    error = agent_error(SignerEndpoint(url, "guess", ca, 10), tmp_path, ca)
    assert "refused the token (wrong token)" in error.what
    assert "the token is wrong, or it was spent" in error.what
    assert "export OCP_RECOVERY_SIGNER_TOKEN" in error.next_step


def test_a_name_the_signer_was_not_started_for(signer: tuple[Signer, str, bytes],
                                               tmp_path: Path) -> None:
    _, url, ca = signer
    error = agent_error(SignerEndpoint(url, TOKEN, ca, 10), tmp_path, ca,
                        dns_name=f"etcd-9.{DOMAIN}")
    assert "not started for this name" in error.what and f"etcd-9.{DOMAIN}" in error.what
    assert f"signer serve --expect etcd-9.{DOMAIN}" in error.next_step


def test_a_signer_of_another_cluster(signer: tuple[Signer, str, bytes],
                                     tmp_path: Path) -> None:
    _, url, _ = signer
    ours = certs.self_signed_ca("etcd-signer").cert_pem()  # this host's CA is another one
    error = agent_error(SignerEndpoint(url, TOKEN, ours, 10), tmp_path, ours)
    assert "TLS verification of the signer" in error.what
    assert "not from this host's etcd CA" in error.what
