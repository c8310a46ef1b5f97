"""`certs report` on a host root of real files: static-pod resources, kubeconfigs with
embedded certificates, the kubelet's `-current` symlink (absolute, resolved on the host)."""

from __future__ import annotations

import base64
import datetime as dt
import os
import socket
from pathlib import Path

import pytest

from toolbox.context import Context, build_context
from toolbox.errors import CertificatesExpiring
from toolbox.kube import config as kubeconfig
from toolbox.kube.client import KubeClient
from toolbox.pki import certs
from toolbox.procedures.certs_report import _common_name, _object_certificates, report

NOW = dt.datetime.now(dt.UTC)


def put(root: Path, host_path: str, data: bytes) -> None:
    path = root / host_path.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture(scope="module")
def ca() -> certs.Issued:
    return certs.self_signed_ca("kube-apiserver-lb-signer", days=3650)


@pytest.fixture
def host(tmp_path: Path, ca: certs.Issued) -> tuple[Context, Path]:
    root = tmp_path / "host"
    spr = "/etc/kubernetes/static-pod-resources"
    expired = certs.issue(ca, common_name="internal-lb", days=30,
                          not_before=NOW - dt.timedelta(days=40))
    soon = certs.issue(ca, common_name="localhost-serving", days=20,
                       not_before=NOW - dt.timedelta(days=10), dns_names=["localhost"])
    old_revision = certs.issue(ca, common_name="old-serving", days=1,
                               not_before=NOW - dt.timedelta(days=100))
    admin = certs.issue(ca, common_name="system:admin", organizations=["system:masters"],
                        days=300, server=False)
    kubelet = certs.issue(ca, common_name="system:node:master-0", days=200, server=False)
    rotated_out = certs.issue(ca, common_name="system:node:master-0", days=30,
                              not_before=NOW - dt.timedelta(days=60))
    put(root, f"{spr}/kube-apiserver-certs/secrets/internal-lb/tls.crt", expired.cert_pem())
    put(root, f"{spr}/kube-apiserver-certs/secrets/internal-lb/tls.key", expired.key_pem())
    put(root, f"{spr}/kube-apiserver-pod-3/secrets/serving/tls.crt", soon.cert_pem())
    put(root, f"{spr}/kube-apiserver-pod-2/secrets/serving/tls.crt", old_revision.cert_pem())
    # The same CA twice in one bundle is one entry.
    put(root, f"{spr}/etcd-member/ca.crt", ca.cert_pem() + ca.cert_pem())
    put(root, "/etc/kubernetes/kubeconfig", kubeconfig.render(
        cluster="c", server="https://api:6443", user="admin", context="admin",
        ca_pem=ca.cert_pem(), client_cert_pem=admin.cert_pem(),
        client_key_pem=admin.key_pem()))
    pki = "/var/lib/kubelet/pki"
    put(root, f"{pki}/kubelet-client-2026.pem", kubelet.cert_pem() + kubelet.key_pem())
    put(root, f"{pki}/kubelet-client-2025.pem", rotated_out.cert_pem())
    # Absolute, as kubelet writes it: only right when resolved under the host root.
    os.symlink(f"{pki}/kubelet-client-2026.pem", root / pki.lstrip("/") /
               "kubelet-client-current.pem")
    ctx = build_context({}, host_root=str(root), state_dir="/var/lib/ocp-recovery")
    return ctx, root


def test_every_certificate_once_soonest_first(host: tuple[Context, Path]) -> None:
    ctx, _ = host
    got = report(ctx, now=NOW)
    spr = "/etc/kubernetes/static-pod-resources"
    rows = [(e.common_name, e.where, e.superseded) for e in got.entries]
    assert rows == [
        ("old-serving", f"{spr}/kube-apiserver-pod-2/secrets/serving/tls.crt", True),
        ("system:node:master-0", "/var/lib/kubelet/pki/kubelet-client-2025.pem", True),
        ("internal-lb", f"{spr}/kube-apiserver-certs/secrets/internal-lb/tls.crt", False),
        ("localhost-serving", f"{spr}/kube-apiserver-pod-3/secrets/serving/tls.crt", False),
        ("system:node:master-0", "/var/lib/kubelet/pki/kubelet-client-current.pem -> "
         "/var/lib/kubelet/pki/kubelet-client-2026.pem", False),
        ("system:admin", "/etc/kubernetes/kubeconfig", False),
        ("kube-apiserver-lb-signer", "/etc/kubernetes/kubeconfig", False),
        ("kube-apiserver-lb-signer", f"{spr}/etcd-member/ca.crt", False),
    ]
    days = {e.common_name: e.days_left for e in got.entries if not e.superseded}
    assert -10.1 < days["internal-lb"] < -9.9
    assert 9.9 < days["localhost-serving"] < 10.1
    assert days["system:admin"] > 299
    by_name = {e.common_name: e for e in got.entries}
    assert by_name["kube-apiserver-lb-signer"].is_ca
    assert not by_name["localhost-serving"].is_ca
    assert by_name["localhost-serving"].sans == ("localhost",)
    assert by_name["system:admin"].subject == "CN=system:admin,O=system:masters"
    assert by_name["system:admin"].issuer == "CN=kube-apiserver-lb-signer"
    assert [e.common_name for e in got.expiring()] == ["internal-lb", "localhost-serving"]
    text = "\n".join(got.lines())
    assert "EXPIRED" in text and "SOON" in text and "old" in text
    assert "8 certificates; 2 in use expire within 30 days (1 already expired)" in text


def test_raise_if_expiring_only_when_warn_days_covers_them(
        host: tuple[Context, Path]) -> None:
    ctx, root = host
    with pytest.raises(CertificatesExpiring) as raised:
        report(ctx, now=NOW).raise_if_expiring(30)
    error = raised.value
    assert error.exit_code == 13
    assert error.what.startswith("2 certificate(s) in use expire within 30 days (1 already "
                                 "expired); the soonest, internal-lb at /etc/kubernetes/")
    assert error.state == "unchanged: the report only reads"
    assert "recovery-apiserver create" in error.next_step

    # Without the expired one, only a window past the 10 days left raises.
    (root / "etc/kubernetes/static-pod-resources/kube-apiserver-certs/secrets/internal-lb/"
     "tls.crt").unlink()
    got = report(ctx, warn_days=5, now=NOW)
    got.raise_if_expiring()
    got.raise_if_expiring(9)
    with pytest.raises(CertificatesExpiring, match=r"expires in 10\.0 days") as raised:
        got.raise_if_expiring(11)
    assert "take an etcd backup now" in raised.value.next_step


def test_an_unreachable_api_is_a_note_and_the_host_is_still_reported(
        host: tuple[Context, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    ctx, _ = host
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # A proxy that never answers: the API is reached directly, never through the
    # environment's proxy (it is on the master or behind the internal load balancer).
    with socket.socket() as proxy:
        proxy.bind(("127.0.0.1", 0))
        proxy.listen()
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.getsockname()[1]}")
        client = KubeClient({
            "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}",
                                                   "insecure-skip-tls-verify": True}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "c", "users": [{"name": "u", "user": {}}]}, "test", timeout=2)
        got = report(ctx, client=client, now=NOW)
        assert len(got.entries) == 8
        [note] = got.notes
        assert note.startswith("API not reachable: LIST secrets in namespace openshift-config on "
                               f"https://127.0.0.1:{port} failed: ")
        assert "connection refused" in note
        assert f"note: {note}" in got.lines()


def test_api_objects(ca: certs.Issued) -> None:
    pair = certs.issue(ca, common_name="aggregator-client", days=30)
    b64 = base64.b64encode(pair.cert_pem() + ca.cert_pem()).decode()
    secret = {"metadata": {"name": "aggregator-client"}, "type": "kubernetes.io/tls",
              "data": {"tls.crt": b64, "tls.key": base64.b64encode(pair.key_pem()).decode()}}
    found = _object_certificates("openshift-kube-apiserver", "Secret", secret)
    assert [(w, _common_name(c)) for w, c, _ in found] == [
        ("api:openshift-kube-apiserver/secret/aggregator-client[tls.crt]", "aggregator-client"),
        ("api:openshift-kube-apiserver/secret/aggregator-client[tls.crt]",
         "kube-apiserver-lb-signer")]
    opaque = {**secret, "type": "Opaque"}
    assert _object_certificates("openshift-config", "Secret", opaque) == []
    bundle = {"metadata": {"name": "client-ca"},
              "data": {"ca-bundle.crt": ca.cert_pem().decode(), "other": "x"}}
    [(where, cert, old)] = _object_certificates("openshift-config", "ConfigMap", bundle)
    assert where == "api:openshift-config/configmap/client-ca[ca-bundle.crt]"
    assert cert == ca.cert and not old

