"""A sandbox master runs kube-apiserver static pods as the real kube-apiserver (1.20), its
OpenShift `--openshift-config` turned into upstream flags, against the master's real etcd."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from tests.conftest import require_etcd, require_kube_apiserver
from tests.integration.test_sandbox import wait_for
from toolbox.errors import PreconditionFailed
from toolbox.pki import certs
from toolbox.sandbox.apiserver import ConfigError, ignored_keys, kube_apiserver_argv
from toolbox.sandbox.binaries import find_kube_apiserver
from toolbox.sandbox.cluster import Sandbox

READY_TIMEOUT = 90.0
BUSY_TIMEOUT = 180.0  # another sandbox (another test run) may hold the addresses a while
RESOURCES = "/etc/kubernetes/static-pod-resources"  # the resource dir, in the container
CERTS = "/etc/kubernetes/static-pod-certs"  # the cert dir, in the container
CONFIG = f"{RESOURCES}/configmaps/config/config.yaml"
REVISION = "kube-apiserver-pod-10"  # the sandbox's newest revision: has the etcd client cert
SNI_NAME = "api.sandbox.ocp4.test"


# ---- the translation alone ----------------------------------------------------------------
def container_path(path: str) -> str:
    return path.replace("/etc/kubernetes/static-pod-resources", "/host/rev")


def test_translation_maps_paths_and_supplies_what_1_20_needs(tmp_path: Path) -> None:
    notes: list[str] = []
    config = {
        "servingInfo": {"bindAddress": "127.0.0.11:6443", "bindNetwork": "tcp4",
                        "certFile": f"{RESOURCES}/s.crt", "keyFile": f"{RESOURCES}/s.key",
                        "clientCA": f"{RESOURCES}/ca.crt",
                        "namedCertificates": [{"certFile": f"{RESOURCES}/n.crt",
                                               "keyFile": f"{RESOURCES}/n.key",
                                               "names": ["a", "b"]}],
                        "cipherSuites": ["TLS_X"]},
        "storageConfig": {"urls": ["https://127.0.0.11:2379", "https://127.0.0.12:2379"]},
        "serviceAccountPublicKeyFiles": [f"{RESOURCES}/sa1.pub", f"{RESOURCES}/sa2.pub"],
        "apiServerArguments": {"storage-backend": ["etcd3"], "bind-address": ["127.0.0.12"],
                               "minimal-shutdown-duration": ["3s"]},
        "admission": {"pluginConfig": {}},
    }
    argv = kube_apiserver_argv("/bin/kas", config, container_path, tmp_path / "work",
                               extra=["-v=2"], known_flags=None, say=notes.append)
    assert argv[0] == "/bin/kas"
    flags = argv[1:]
    assert "--bind-address=127.0.0.12" in flags and "--bind-address=127.0.0.11" not in flags
    assert {"--secure-port=6443", "--advertise-address=127.0.0.11",
            "--tls-cert-file=/host/rev/s.crt", "--client-ca-file=/host/rev/ca.crt",
            "--tls-sni-cert-key=/host/rev/n.crt,/host/rev/n.key:a,b",
            "--etcd-servers=https://127.0.0.11:2379,https://127.0.0.12:2379",
            "--etcd-prefix=/kubernetes.io", "--service-account-key-file=/host/rev/sa1.pub",
            "--service-account-key-file=/host/rev/sa2.pub", "--authorization-mode=RBAC",
            "--service-cluster-ip-range=172.30.0.0/16", "--storage-backend=etcd3",
            "--minimal-shutdown-duration=3s"} <= set(flags)
    assert flags[-1] == "-v=2"
    key = tmp_path / "work/service-account-signer.key"
    assert f"--service-account-signing-key-file={key}" in flags
    assert f"--service-account-key-file={key}" in flags
    assert f"--cert-dir={tmp_path / 'work/certs-6443'}" in flags
    assert notes == ["kube-apiserver config: ignoring servingInfo.cipherSuites (not translated "
                     "by the sandbox)",
                     "kube-apiserver config: ignoring admission (not translated by the sandbox)"]
    assert ignored_keys(config) == ["servingInfo.cipherSuites", "admission"]
    # The binary's own flags decide what an OpenShift-only argument is.
    argv = kube_apiserver_argv("/bin/kas", config, container_path, tmp_path / "work",
                               extra=["--forked", "x", "-v", "2", "--gone=1", f"--v={RESOURCES}"],
                               known_flags=frozenset({"bind-address", "secure-port", "v"}),
                               say=notes.append)
    assert argv == ["/bin/kas", "--secure-port=6443", "--bind-address=127.0.0.12", "-v", "2",
                    "--v=/host/rev"]
    assert any("dropping --minimal-shutdown-duration=3s" in n for n in notes)
    assert any("dropping --forked" in n for n in notes)


@pytest.mark.parametrize("config", [
    {"storageConfig": {"urls": ["https://127.0.0.11:2379"]}},
    {"servingInfo": {"bindAddress": "localhost:6443"},
     "storageConfig": {"urls": ["https://127.0.0.11:2379"]}},
    {"servingInfo": {"bindAddress": "127.0.0.11:6443"}},
    {"servingInfo": {"bindAddress": "127.0.0.11:6443"},
     "storageConfig": {"urls": ["https://127.0.0.11:2379"]}, "apiServerArguments": ["x"]},
    "not a mapping",
])
def test_translation_refuses_a_config_it_cannot_run(tmp_path: Path, config: Any) -> None:
    with pytest.raises(ConfigError):
        kube_apiserver_argv("/bin/kas", config, str, tmp_path)


@pytest.mark.parametrize(("version", "found"), [("v1.20.2", True), ("v1.27.0", True),
                                                ("v1.19.16", False)])
def test_find_kube_apiserver_wants_1_20_or_newer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 version: str, found: bool) -> None:
    fake = tmp_path / "cache/bin/kube-apiserver"
    write(fake, f"#!/bin/sh\necho 'Kubernetes {version}'\n", 0o755)
    monkeypatch.delenv("OCP_RECOVERY_KUBE_APISERVER", raising=False)
    monkeypatch.setenv("KUBE_APISERVER_CACHE", str(tmp_path / "cache"))
    assert find_kube_apiserver() == (fake if found else None)
    monkeypatch.setenv("OCP_RECOVERY_KUBE_APISERVER", str(tmp_path / "elsewhere"))
    assert find_kube_apiserver() is None  # the variable wins, even over a good cache


# ---- the real kube-apiserver in a sandbox -----------------------------------------------
@pytest.fixture(scope="module")
def kas_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    binary = require_kube_apiserver()
    require_etcd("3.5")
    directory = tmp_path_factory.mktemp("kas-sandbox")
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            sb = Sandbox.up(directory, masters=1, etcd="3.5", kube_apiserver=binary)
            break
        except PreconditionFailed as exc:  # refused before it made anything: try again
            if "already in use" not in exc.what or time.monotonic() > deadline:
                raise
            time.sleep(2)
    # These tests write their own pods; the layout's kube-apiserver pod would claim :6443.
    (sb.root(0) / "etc/kubernetes/manifests/kube-apiserver-pod.yaml").unlink(missing_ok=True)
    try:
        yield sb
    finally:
        sb.down()


def write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)


def copy_etcd_client_files(root: Path, resources: Path) -> None:
    """The sandbox's etcd client cert, CA bundle and encryption config, as a revision has."""
    rev = root / "etc/kubernetes/static-pod-resources" / REVISION
    for name in ("configmaps/etcd-serving-ca/ca-bundle.crt", "secrets/etcd-client/tls.crt",
                 "secrets/etcd-client/tls.key", "secrets/encryption-config/encryption-config"):
        write(resources / name, (rev / name).read_bytes(), 0o600)


def write_pair(directory: Path, pair: certs.Issued) -> None:
    write(directory / "tls.crt", pair.cert_pem())
    write(directory / "tls.key", pair.key_pem(), 0o600)


def manifest(name: str, config: str, volumes: list[tuple[str, str, str]]) -> dict[str, Any]:
    """A static pod as 4.3 writes it: hyperkube kube-apiserver, config by hostPath volume."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "openshift-kube-apiserver"},
        "spec": {
            "containers": [{"name": name, "image": "quay.io/openshift/hyperkube",
                            "command": ["hyperkube", "kube-apiserver"],
                            "args": [f"--openshift-config={config}", "-v=1"],
                            "volumeMounts": [{"name": n, "mountPath": m}
                                             for n, _, m in volumes]}],
            "hostNetwork": True,
            "volumes": [{"name": n, "hostPath": {"path": h}} for n, h, _ in volumes],
        },
    }


def admin_context(server_ca: bytes, client: certs.Issued, work: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=server_ca.decode())
    write(work / "admin.crt", client.cert_pem())
    write(work / "admin.key", client.key_pem(), 0o600)
    ctx.load_cert_chain(work / "admin.crt", work / "admin.key")
    return ctx


def request(ctx: ssl.SSLContext, host: str, port: int, method: str, path: str,
            body: dict[str, Any] | None = None, *, server_hostname: str | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes, bytes]:
    """(status, body, the DER certificate the server presented)."""
    sock = socket.create_connection((host, port), timeout=10)
    tls = ctx.wrap_socket(sock, server_hostname=server_hostname or host)
    conn = http.client.HTTPSConnection(host, port, timeout=10, context=ctx)
    conn.sock = tls
    try:
        conn.request(method, path, body=json.dumps(body) if body else None,
                     headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read(), tls.getpeercert(binary_form=True) or b""
    finally:
        conn.close()


def wait_ready(sb: Sandbox, ctx: ssl.SSLContext, host: str, port: int) -> float:
    start = time.monotonic()
    last = ""
    while time.monotonic() - start < READY_TIMEOUT:
        try:
            status, body, _ = request(ctx, host, port, "GET", "/readyz")
            if status == 200:
                return time.monotonic() - start
            last = f"{status} {body[-300:]!r}"
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.5)
    logs = "\n".join(p.read_text()[-3000:] for p in (sb.master_dir(0) / "logs").glob("*kube*"))
    agent = (sb.master_dir(0) / "agent.log").read_text()[-2000:]
    pytest.fail(f"kube-apiserver on {host}:{port} not ready in {READY_TIMEOUT:.0f}s "
                f"(last: {last})\nagent:\n{agent}\nlogs:\n{logs}")


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def wait_port_closed(host: str, port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while port_open(host, port):
        assert time.monotonic() < deadline, f"{host}:{port} still open"
        time.sleep(0.2)


def etcd_keys(sb: Sandbox, prefix: str) -> list[str]:
    tls = sb.client_tls
    out = subprocess.run([str(sb.tools_dir / "etcdctl"), "--endpoints=https://127.0.0.11:2379",
                          f"--cacert={tls.ca}", f"--cert={tls.cert}", f"--key={tls.key}",
                          "get", "--prefix", "--keys-only", prefix],
                         capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.split()


@pytest.fixture(scope="module")
def normal_apiserver(kas_sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
                     ) -> dict[str, Any]:
    """The 4.3 layout: a revision's resource dir and the cert dir, each a hostPath volume."""
    root = kas_sandbox.root(0)
    rev = root / "etc/kubernetes/static-pod-resources/test-kube-apiserver-pod-1"
    cert_dir = root / "etc/kubernetes/static-pod-resources/test-kube-apiserver-certs"
    copy_etcd_client_files(root, rev)
    serving_ca = certs.self_signed_ca("kube-apiserver-serving-signer")
    client_ca = certs.self_signed_ca("kube-apiserver-client-signer")
    serving = certs.issue(serving_ca, common_name="127.0.0.11", ip_addresses=["127.0.0.11"],
                          dns_names=["localhost"], client=False)
    named = certs.issue(serving_ca, common_name=SNI_NAME, dns_names=[SNI_NAME], client=False)
    admin = certs.issue(client_ca, common_name="test-admin", organizations=["system:masters"],
                        server=False)
    sa = certs.new_key("rsa")
    write_pair(cert_dir / "secrets/service-network-serving-certkey", serving)
    write_pair(cert_dir / "secrets/external-loadbalancer-serving-certkey", named)
    write(rev / "configmaps/client-ca/ca-bundle.crt", client_ca.cert_pem())
    write(rev / "configmaps/sa-token-signing-certs/service-account-001.pub",
          sa.public_key().public_bytes(serialization.Encoding.PEM,
                                       serialization.PublicFormat.SubjectPublicKeyInfo))
    write_pair(rev / "secrets/aggregator-client", certs.issue(
        client_ca, common_name="system:openshift-aggregator", server=False))
    write_pair(rev / "secrets/kubelet-client", certs.issue(
        client_ca, common_name="system:kube-apiserver", server=False))
    config = {
        "apiVersion": "kubecontrolplane.config.openshift.io/v1",
        "kind": "KubeAPIServerConfig",
        "admission": {"pluginConfig": {"network.openshift.io/RestrictedEndpointsAdmission": {}}},
        "servingInfo": {
            "bindAddress": "127.0.0.11:6443", "bindNetwork": "tcp4",
            "certFile": f"{CERTS}/secrets/service-network-serving-certkey/tls.crt",
            "keyFile": f"{CERTS}/secrets/service-network-serving-certkey/tls.key",
            "clientCA": f"{RESOURCES}/configmaps/client-ca/ca-bundle.crt",
            "namedCertificates": [{
                "certFile": f"{CERTS}/secrets/external-loadbalancer-serving-certkey/tls.crt",
                "keyFile": f"{CERTS}/secrets/external-loadbalancer-serving-certkey/tls.key",
                "names": [SNI_NAME]}],
        },
        "storageConfig": {
            "urls": ["https://127.0.0.11:2379"],
            "ca": f"{RESOURCES}/configmaps/etcd-serving-ca/ca-bundle.crt",
            "certFile": f"{RESOURCES}/secrets/etcd-client/tls.crt",
            "keyFile": f"{RESOURCES}/secrets/etcd-client/tls.key",
        },
        "serviceAccountPublicKeyFiles": [
            f"{RESOURCES}/configmaps/sa-token-signing-certs/service-account-001.pub"],
        "authConfig": {"requestHeader": {
            "clientCA": f"{RESOURCES}/configmaps/client-ca/ca-bundle.crt",
            "clientCommonNames": ["system:openshift-aggregator"]}},
        "aggregatorConfig": {"proxyClientInfo": {
            "certFile": f"{RESOURCES}/secrets/aggregator-client/tls.crt",
            "keyFile": f"{RESOURCES}/secrets/aggregator-client/tls.key"}},
        "kubeletClientInfo": {
            "ca": f"{RESOURCES}/configmaps/client-ca/ca-bundle.crt",
            "certFile": f"{RESOURCES}/secrets/kubelet-client/tls.crt",
            "keyFile": f"{RESOURCES}/secrets/kubelet-client/tls.key"},
        "apiServerArguments": {
            "encryption-provider-config": [
                f"{RESOURCES}/secrets/encryption-config/encryption-config"],
            "storage-backend": ["etcd3"],
            "storage-media-type": ["application/vnd.kubernetes.protobuf"],
            "minimal-shutdown-duration": ["3s"],  # OpenShift's fork only
        },
    }
    write(rev / "configmaps/config/config.yaml", yaml.safe_dump(config))
    wait_port_closed("127.0.0.11", 6443, BUSY_TIMEOUT)  # not another sandbox's
    pod = manifest("test-kube-apiserver", CONFIG, [
        ("resource-dir", "/etc/kubernetes/static-pod-resources/test-kube-apiserver-pod-1",
         RESOURCES),
        ("cert-dir", "/etc/kubernetes/static-pod-resources/test-kube-apiserver-certs", CERTS)])
    manifest_path = root / "etc/kubernetes/manifests/test-kube-apiserver-pod.yaml"
    write(manifest_path, yaml.safe_dump(pod))
    ctx = admin_context(serving_ca.cert_pem(), admin, tmp_path_factory.mktemp("admin"))
    seconds = wait_ready(kas_sandbox, ctx, "127.0.0.11", 6443)
    print(f"kube-apiserver ready in {seconds:.1f}s")
    return {"ctx": ctx, "serving": serving, "named": named, "manifest": manifest_path}


def test_kube_apiserver_serves_its_configured_certs(normal_apiserver: dict[str, Any]) -> None:
    ctx = normal_apiserver["ctx"]
    status, _, presented = request(ctx, "127.0.0.11", 6443, "GET", "/readyz")
    assert status == 200
    assert presented == normal_apiserver["serving"].cert.public_bytes(
        serialization.Encoding.DER)
    _, _, presented = request(ctx, "127.0.0.11", 6443, "GET", "/readyz",
                              server_hostname=SNI_NAME)
    assert presented == normal_apiserver["named"].cert.public_bytes(serialization.Encoding.DER)


def test_kube_apiserver_stores_in_the_masters_etcd(kas_sandbox: Sandbox,
                                                   normal_apiserver: dict[str, Any]) -> None:
    ctx = normal_apiserver["ctx"]
    status, body, _ = request(ctx, "127.0.0.11", 6443, "GET", "/api/v1/namespaces")
    assert status == 200, body
    names = {item["metadata"]["name"] for item in json.loads(body)["items"]}
    assert {"default", "kube-system"} <= names
    assert "/kubernetes.io/namespaces/default" in etcd_keys(kas_sandbox, "/kubernetes.io/")
    # Encrypted with the revision's encryption config (aescbc), as 4.3 does.
    status, body, _ = request(ctx, "127.0.0.11", 6443, "POST",
                              "/api/v1/namespaces/default/secrets",
                              {"metadata": {"name": "probe"}, "stringData": {"k": "v"}})
    assert status == 201, body


def test_tokens_of_the_throwaway_signing_key_verify(kas_sandbox: Sandbox,
                                                    normal_apiserver: dict[str, Any]) -> None:
    ctx = normal_apiserver["ctx"]
    key = kas_sandbox.master_dir(0) / "kube-apiserver/service-account-signer.key"
    assert key.exists()
    assert not list(kas_sandbox.root(0).rglob("service-account-signer.key"))
    status, body, _ = request(ctx, "127.0.0.11", 6443, "POST",
                              "/api/v1/namespaces/default/serviceaccounts",
                              {"metadata": {"name": "probe"}})
    assert status == 201, body
    status, body, _ = request(ctx, "127.0.0.11", 6443, "POST",
                              "/api/v1/namespaces/default/serviceaccounts/probe/token",
                              {"spec": {"expirationSeconds": 600}})
    assert status == 201, body
    token = json.loads(body)["status"]["token"]
    anonymous = ssl.create_default_context(cadata="".join(
        ssl.DER_cert_to_PEM_cert(c) for c in ctx.get_ca_certs(binary_form=True)))
    status, body, _ = request(anonymous, "127.0.0.11", 6443, "GET",
                              "/apis/authentication.k8s.io/v1",
                              headers={"Authorization": f"Bearer {token}"})
    assert status == 200, body


def test_the_agent_logs_what_it_did_not_translate(kas_sandbox: Sandbox,
                                                  normal_apiserver: dict[str, Any]) -> None:
    log = (kas_sandbox.master_dir(0) / "agent.log").read_text()
    assert "ignoring admission" in log
    assert "dropping --minimal-shutdown-duration=3s" in log


def self_signed_ca_with_sans(common_name: str, names: list[str], ips: list[str]
                             ) -> certs.Issued:
    """The recovery apiserver's one CA: serving cert, client CA and SA key at once."""
    key = certs.new_key()
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(certs.subject_alt_names(names, ips)),
                           critical=False)
            .sign(key, hashes.SHA256()))  # type: ignore[arg-type]
    return certs.Issued(cert, key)


def test_a_recovery_apiserver_with_one_ca_for_everything(
        kas_sandbox: Sandbox, normal_apiserver: dict[str, Any],
        tmp_path_factory: pytest.TempPathFactory) -> None:
    root = kas_sandbox.root(0)
    resources = root / "etc/kubernetes/static-pod-resources/recovery-kube-apiserver"
    copy_etcd_client_files(root, resources)
    ca = self_signed_ca_with_sans("localhost-recovery", ["localhost"], ["127.0.0.1"])
    write(resources / "serving-ca.crt", ca.cert_pem())
    write(resources / "serving-ca.key", ca.key_pem(), 0o600)
    inside = "/etc/kubernetes/static-pod-resources"
    config = {
        "apiVersion": "kubecontrolplane.config.openshift.io/v1",
        "kind": "KubeAPIServerConfig",
        "servingInfo": {"bindAddress": "127.0.0.1:7443", "bindNetwork": "tcp4",
                        "certFile": f"{inside}/serving-ca.crt",
                        "keyFile": f"{inside}/serving-ca.key",
                        "clientCA": f"{inside}/serving-ca.crt"},
        "storageConfig": {"urls": ["https://127.0.0.11:2379"],
                          "ca": f"{inside}/configmaps/etcd-serving-ca/ca-bundle.crt",
                          "certFile": f"{inside}/secrets/etcd-client/tls.crt",
                          "keyFile": f"{inside}/secrets/etcd-client/tls.key"},
        "serviceAccountPublicKeyFiles": [f"{inside}/serving-ca.crt"],
        # Without the cluster's encryption config it cannot read secrets, and is not ready.
        "apiServerArguments": {"encryption-provider-config": [
            f"{inside}/secrets/encryption-config/encryption-config"]},
    }
    write(resources / "config.yaml", yaml.safe_dump(config))
    pod = manifest("kube-apiserver-recovery", f"{inside}/config.yaml", [
        ("resource-dir", "/etc/kubernetes/static-pod-resources/recovery-kube-apiserver",
         inside)])
    recovery_manifest = root / "etc/kubernetes/manifests/recovery-kube-apiserver-pod.yaml"
    admin = certs.issue(ca, common_name="recovery-admin", organizations=["system:masters"],
                        server=False)
    ctx = admin_context(ca.cert_pem(), admin, tmp_path_factory.mktemp("recovery-admin"))
    wait_port_closed("127.0.0.1", 7443, BUSY_TIMEOUT)  # not another sandbox's
    write(recovery_manifest, yaml.safe_dump(pod))
    try:
        print(f"recovery kube-apiserver ready in "
              f"{wait_ready(kas_sandbox, ctx, '127.0.0.1', 7443):.1f}s")
        status, body, presented = request(ctx, "127.0.0.1", 7443, "GET",
                                          "/api/v1/namespaces/default/secrets/probe")
        assert presented == ca.cert.public_bytes(serialization.Encoding.DER)
        # The same etcd prefix as the normal apiserver: it sees the same objects.
        assert status == 200, body
    finally:
        recovery_manifest.unlink(missing_ok=True)
    wait_port_closed("127.0.0.1", 7443)
    assert port_open("127.0.0.11", 6443)  # the other pod is left alone


def test_a_config_it_cannot_translate_skips_the_pod(kas_sandbox: Sandbox) -> None:
    root = kas_sandbox.root(0)
    write(root / "etc/kubernetes/static-pod-resources/broken/config.yaml",
          yaml.safe_dump({"servingInfo": {"bindAddress": "127.0.0.11:8443"}}))
    broken = root / "etc/kubernetes/manifests/broken-kube-apiserver-pod.yaml"
    write(broken, yaml.safe_dump(manifest("broken-kube-apiserver", f"{RESOURCES}/config.yaml", [
        ("resource-dir", "/etc/kubernetes/static-pod-resources/broken", RESOURCES)])))
    agent_log = kas_sandbox.master_dir(0) / "agent.log"
    try:
        wait_for(lambda: "broken-kube-apiserver-pod.yaml unreadable" in agent_log.read_text())
        time.sleep(2.5)  # retried every second, logged once
        assert agent_log.read_text().count("broken-kube-apiserver-pod.yaml unreadable") == 1
        assert "storageConfig.urls is required" in agent_log.read_text()
        pods = subprocess.run([str(kas_sandbox.master_dir(0) / "bin/crictl"), "pods"],
                              capture_output=True, text=True, timeout=30)
        assert pods.returncode == 0 and "etcd-member" in pods.stdout
        assert "broken" not in pods.stdout
    finally:
        broken.unlink()


def test_removing_the_manifest_stops_kube_apiserver(normal_apiserver: dict[str, Any]) -> None:
    normal_apiserver["manifest"].unlink()
    wait_port_closed("127.0.0.11", 6443)
