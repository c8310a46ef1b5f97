"""A real signer over HTTPS on an ephemeral port, and clients that send it CSRs, for the
signer tests (tests/unit/test_signer.py, tests/reliability/test_hostile_signer.py)."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from toolbox.pki import certs
from toolbox.pki.signer import API, Signer, make_server

DOMAIN = "example.test"
MEMBER = f"etcd-1.{DOMAIN}"
TOKEN = "secret-token"
PEER = (f"system:etcd-peer:{MEMBER}", "system:etcd-peers", [MEMBER, DOMAIN], ["10.0.0.6"])


@contextlib.contextmanager
def serve_signer(tmp_path: Path) -> Iterator[tuple[Signer, str, bytes]]:
    """(the signer, its URL, the etcd CA's PEM) while it serves."""
    etcd_ca, metric_ca = certs.self_signed_ca("etcd-signer"), certs.self_signed_ca("metric")
    serving = certs.issue(etcd_ca, common_name="system:etcd-server:etcd-0", ip_addresses=[
        "127.0.0.1"])
    (tmp_path / "s.crt").write_bytes(serving.cert_pem())
    (tmp_path / "s.key").write_bytes(serving.key_pem())
    the_signer = Signer(etcd_ca, metric_ca, TOKEN, {MEMBER}, DOMAIN)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = make_server(the_signer, ("127.0.0.1", port), tmp_path / "s.crt",
                         tmp_path / "s.key")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield the_signer, f"https://127.0.0.1:{port}", etcd_ca.cert_pem()
    finally:
        server.shutdown()
        server.server_close()


def csr_body(cn: str, org: str, dns: list[str], ips: list[str],  # type: ignore[type-arg]
             key: certs.PrivateKey | None = None) -> dict:
    """A CSR object as the agent sends it; for a new key unless given one."""
    key = key or certs.new_key()
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, org),
                                    x509.NameAttribute(x509.NameOID.COMMON_NAME, cn)]))
           .add_extension(x509.SubjectAlternativeName(certs.subject_alt_names(dns, ips)),
                          critical=False)
           .sign(key, hashes.SHA256()))
    return {"metadata": {"name": cn}, "spec": {"request": base64.b64encode(
        csr.public_bytes(serialization.Encoding.PEM)).decode()}}


def post(url: str, ca: bytes, body: dict | bytes, token: str | None,  # type: ignore[type-arg]
         path: str = API) -> tuple[int, str]:
    return _call(url + path, ca, token, body if isinstance(body, bytes) else
                 json.dumps(body).encode())


def get(url: str, ca: bytes, path: str, token: str | None) -> tuple[int, str]:
    return _call(url + path, ca, token, None)


def _call(url: str, ca: bytes, token: str | None, data: bytes | None) -> tuple[int, str]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data, headers)
    context = ssl.create_default_context(cadata=ca.decode())
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
