"""The signer over real HTTPS: the token holder gets the expected member's three
certificates, verified, then the token is spent. (Refusals:
tests/reliability/test_hostile_signer.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.signing import DOMAIN, MEMBER, PEER, TOKEN, csr_body, post, serve_signer
from toolbox.pki import certs
from toolbox.pki.agent import SignerEndpoint, request_certificates
from toolbox.pki.profiles import member_cert_requests
from toolbox.pki.signer import Signer


@pytest.fixture
def signer(tmp_path: Path) -> Iterator[tuple[Signer, str, bytes]]:
    with serve_signer(tmp_path) as running:
        yield running


def test_agent_gets_three_verified_certificates_then_the_token_is_spent(
        signer: tuple[Signer, str, bytes], tmp_path: Path) -> None:
    the_signer, url, ca = signer
    endpoint = SignerEndpoint(url, TOKEN, ca, 10)
    cas = {"etcd": ca, "metric": the_signer.metric_ca.cert_pem()}
    requests = member_cert_requests(MEMBER, "10.0.0.6", DOMAIN)
    request_certificates(endpoint, requests, cas, tmp_path, tmp_path / "pending")
    for request in requests:
        [cert] = certs.load_certificates((tmp_path / f"{request.file_stem}.crt").read_bytes())
        issuer = the_signer.metric_ca if request.signer == "metric" else the_signer.etcd_ca
        cert.verify_directly_issued_by(issuer.cert)
        assert oct((tmp_path / f"{request.file_stem}.key").stat().st_mode & 0o777) == "0o600"
    assert the_signer.spent and not (tmp_path / "pending").exists()
    status, text = post(url, ca, csr_body(*PEER), TOKEN)
    assert status == 401 and "already used" in text
