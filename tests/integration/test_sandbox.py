"""The sandbox is product: masters that behave like 4.3 masters, with real etcd and PKI."""

from __future__ import annotations

import ipaddress
import subprocess
import time

from cryptography import x509

from toolbox.etcd.cluster import parse_env_file
from toolbox.pki.profiles import SERVICE_NAMES
from toolbox.sandbox.cluster import Sandbox
from toolbox.sandbox.layout import DOMAIN, MasterSpec


def shim(sandbox: Sandbox, index: int, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(sandbox.master_dir(index) / "bin" / argv[0]), *argv[1:]],
                          capture_output=True, text=True, timeout=60)


def wait_for(predicate, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_members_are_the_pod_derived_names(sandbox: Sandbox) -> None:
    with sandbox.client(0) as c:
        members = c.members()
    assert sorted((m.name, m.peer_urls) for m in members) == [
        (f"etcd-member-master-{i}", (f"https://127.0.0.{11 + i}:2380",)) for i in range(3)]


def test_member_certs_follow_the_43_profiles(sandbox: Sandbox) -> None:
    spec = MasterSpec(1)
    member = sandbox.root(1) / "etc/kubernetes/static-pod-resources/etcd-member"
    ca = x509.load_pem_x509_certificate((member / "ca.crt").read_bytes())
    metric_ca = x509.load_pem_x509_certificate((member / "metric-ca.crt").read_bytes())
    server = x509.load_pem_x509_certificate(
        (member / f"system:etcd-server:{spec.dns_name}.crt").read_bytes())
    metric = x509.load_pem_x509_certificate(
        (member / f"system:etcd-metric:{spec.dns_name}.crt").read_bytes())
    server.verify_directly_issued_by(ca)
    metric.verify_directly_issued_by(metric_ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", *SERVICE_NAMES,
                                                          f"*.{DOMAIN}"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address(spec.ip), ipaddress.ip_address("127.0.0.1")}
    orgs = server.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
    assert [o.value for o in orgs] == ["system:etcd-servers"]
    key = member / f"system:etcd-server:{spec.dns_name}.key"
    assert oct(key.stat().st_mode & 0o777) == "0o600"


def test_discovery_init_rewrote_the_env_file_as_43_did(sandbox: Sandbox) -> None:
    env = parse_env_file((sandbox.root(0) / "run/etcd/environment").read_text())
    assert set(env.exported) == {"ETCD_INITIAL_CLUSTER", "ETCD_INITIAL_CLUSTER_STATE"}
    assert env.plain["ETCD_DNS_NAME"] == f"etcd-0.{DOMAIN}"
    assert env.plain["ETCD_IPV4_ADDRESS"] == "127.0.0.11"


def test_kubelet_and_crio_shims(sandbox: Sandbox) -> None:
    pods = shim(sandbox, 2, "crictl", "pods", "-name", "etcd-member", "--state", "Ready", "-q")
    assert pods.returncode == 0 and len(pods.stdout.split()) == 1
    assert shim(sandbox, 2, "systemctl", "stop", "kubelet.service").returncode == 0
    assert shim(sandbox, 2, "systemctl", "is-active", "kubelet").returncode == 3
    manifests = sandbox.root(2) / "etc/kubernetes/manifests"
    stash = sandbox.root(2) / "stash"
    stash.mkdir()
    (manifests / "kube-scheduler-pod.yaml").rename(stash / "kube-scheduler-pod.yaml")
    time.sleep(0.5)  # kubelet is down: nothing reacts to the manifest change
    assert "kube-scheduler" in shim(sandbox, 2, "crictl", "ps").stdout
    ids = shim(sandbox, 2, "crictl", "ps", "-q").stdout.split()
    assert shim(sandbox, 2, "crictl", "stop", *ids).returncode == 0
    assert shim(sandbox, 2, "crictl", "ps", "-q").stdout == ""
    (stash / "kube-scheduler-pod.yaml").rename(manifests / "kube-scheduler-pod.yaml")
    assert shim(sandbox, 2, "systemctl", "daemon-reload").returncode == 0
    assert shim(sandbox, 2, "systemctl", "start", "kubelet").returncode == 0
    sandbox.wait_healthy([2], 30)
    wait_for(lambda: len(shim(sandbox, 2, "crictl", "ps", "-q").stdout.split()) == 5)
    assert shim(sandbox, 2, "systemctl", "stop", "docker").returncode == 5
    assert shim(sandbox, 2, "crictl", "stop", "nope").returncode == 1


def test_env_prints_the_exports_for_a_master(run_cli, sandbox: Sandbox) -> None:
    out = run_cli(["sandbox", "env", "1", "--dir", str(sandbox.dir)]).stdout
    assert f"export OCP_RECOVERY_HOST_ROOT={sandbox.root(1)}" in out
    assert "export ETCDCTL_ENDPOINTS=https://127.0.0.12:2379" in out
