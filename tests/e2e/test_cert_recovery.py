"""Guide 3.4 piece by piece against a real kube-apiserver on a 1-master sandbox: the recovery
API server, regenerate-certificates (dry run and refusals), kubeconfig recover, and CSR
verdicts on real CSRs made in the API by real identities."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from kubernetes.client import ApiException, CertificatesV1Api, CustomObjectsApi
from urllib3.exceptions import HTTPError

from tests.conftest import (
    Outcome,
    assert_host_unchanged,
    require_etcd,
    require_kube_apiserver,
    tree_fingerprint,
)
from tests.e2e.helpers import command
from toolbox.kube import config as kubeconfig
from toolbox.kube.client import KubeClient, secret_value
from toolbox.kube.manifests import annotated, host_path_of, load_pod
from toolbox.pki import certs, rotation
from toolbox.sandbox.cluster import API_TIMEOUT, Sandbox
from toolbox.waiting import wait_until

pytestmark = pytest.mark.timeout(600)
IGNORED = ("var/lib/etcd", "var/lib/ocp-recovery")
BOOTSTRAPPER = "system:serviceaccount:openshift-machine-config-operator:node-bootstrapper"
V1BETA1 = ("certificates.k8s.io", "v1beta1", "certificatesigningrequests")


@pytest.fixture(scope="module")
def api_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    binary = require_kube_apiserver()
    require_etcd("3.5")
    sandbox = Sandbox.up(tmp_path_factory.mktemp("api-sandbox"), masters=1, etcd="3.5",
                         kube_apiserver=binary)
    yield sandbox
    sandbox.down()


@pytest.fixture
def on_master(api_sandbox: Sandbox, run_cli):  # type: ignore[no-untyped-def]
    env = api_sandbox.env_vars(0, {})

    def run(*args: str, exit_code: int = 0) -> Outcome:
        return run_cli(["--log-format", "json", *args], env=env,  # type: ignore[no-any-return]
                       exit_code=exit_code)

    return run


def _recovery_client(root: Path) -> KubeClient:
    path = root / "etc/kubernetes/static-pod-resources/recovery-kube-apiserver-pod/admin.kubeconfig"
    return KubeClient.from_file(path, timeout=10)


def test_recovery_apiserver_serves_with_sans_and_refuses_a_second_create(
        api_sandbox: Sandbox, on_master) -> None:  # type: ignore[no-untyped-def]
    root = api_sandbox.root(0)
    before = tree_fingerprint(root, IGNORED)
    out = on_master("recovery-apiserver", "create", "--yes")
    ready = out.json_lines()[-1]
    assert ready["event"] == "recovery_apiserver.ready"
    recovery = root / "etc/kubernetes/static-pod-resources/recovery-kube-apiserver-pod"
    assert ready["kubeconfig"] == "/etc/kubernetes/static-pod-resources/" \
        "recovery-kube-apiserver-pod/admin.kubeconfig"

    client = _recovery_client(root)
    assert (client.get("Namespace", "kube-system") or {})["metadata"]["name"] == "kube-system"
    # The data is the cluster's: what the seeded (normal) API wrote is read back here.
    infra = client.get("Infrastructure", "cluster")
    assert infra and infra["status"]["apiServerInternalURI"] == "https://127.0.0.11:6443"

    ca = x509.load_pem_x509_certificate((recovery / "serving-ca.crt").read_bytes())
    serving = x509.load_pem_x509_certificate((recovery / "serving.crt").read_bytes())
    assert rotation.issued_by(serving, ca)
    assert rotation.hostnames_of(serving) == ("127.0.0.1", "localhost")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in recovery.iterdir()}
    assert modes["serving-ca.key"] == modes["etcd-client.key"] == 0o600
    assert modes["admin.kubeconfig"] == modes["encryption-config"] == 0o600
    assert modes["serving-ca.crt"] == modes["config.yaml"] == 0o644
    revision = root / "etc/kubernetes/static-pod-resources/kube-apiserver-pod-10"
    assert (recovery / "encryption-config").read_bytes() == \
        (revision / "secrets/encryption-config/encryption-config").read_bytes()

    made = tree_fingerprint(root, IGNORED)
    with assert_host_unchanged(root, IGNORED):
        refused = on_master("recovery-apiserver", "create", "--yes", exit_code=4)
    assert "already exists" in refused.stderr and "destroy" in refused.stderr
    assert set(made) - set(before) == {
        "etc/kubernetes/manifests/recovery-kube-apiserver-pod.yaml",
        "etc/kubernetes/static-pod-resources/recovery-kube-apiserver-pod",
        *(f"etc/kubernetes/static-pod-resources/recovery-kube-apiserver-pod/{name}"
          for name in ("etcd-client.crt", "etcd-client.key", "etcd-serving-ca-bundle.crt",
                       "serving-ca.crt", "serving-ca.key", "serving.crt", "serving.key",
                       "config.yaml", "encryption-config", "admin.kubeconfig"))}


def test_regenerate_dry_run_lists_what_is_due_and_changes_nothing(
        api_sandbox: Sandbox, on_master) -> None:  # type: ignore[no-untyped-def]
    root = api_sandbox.root(0)
    admin = KubeClient.from_file(api_sandbox.admin_kubeconfig, timeout=10)
    signer = ("Secret", "kube-control-plane-signer", rotation.KAS_OPERATOR)
    version = (admin.get(*signer) or {})["metadata"]["resourceVersion"]
    with assert_host_unchanged(root, IGNORED):
        out = on_master("regenerate-certificates", "--dry-run")
    assert "0 objects are due" in out.stdout  # rotated two days ago: nothing due yet
    assert "annotate the three manifests" in out.stdout
    assert (admin.get(*signer) or {})["metadata"]["resourceVersion"] == version


def test_kubeconfig_recover_prints_a_kubeconfig_whose_token_works(
        api_sandbox: Sandbox, on_master) -> None:  # type: ignore[no-untyped-def]
    root = api_sandbox.root(0)
    with assert_host_unchanged(root, IGNORED):  # printing writes nothing
        out = on_master("kubeconfig", "recover")
    doc = yaml.safe_load(out.stdout)
    assert doc["current-context"] == "kubelet"
    assert doc["clusters"][0]["cluster"]["server"] == "https://127.0.0.11:6443"
    assert doc["clusters"][0]["name"] == "recovery"
    made = KubeClient(doc, "printed", timeout=10).create(_csr("system:node:master-0",
                                                              ["client auth"], []))
    assert made["spec"]["username"] == BOOTSTRAPPER


def test_recover_kubeconfig_sh_prints_the_same_kubeconfig(
        api_sandbox: Sandbox, on_master, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    from toolbox import legacy

    printed = yaml.safe_load(on_master("kubeconfig", "recover").stdout)
    assert legacy.recover_kubeconfig([]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == printed
    assert legacy.recover_kubeconfig(["extra"]) == 2


def test_an_api_failure_is_exit_12_naming_the_request_and_what_to_do(
        api_sandbox: Sandbox, on_master) -> None:  # type: ignore[no-untyped-def]
    """A token the real API refuses, and a server that is stopped: exit 12 with the request,
    the server and its answer, and the next step; no traceback."""
    root = api_sandbox.root(0)
    admin = yaml.safe_load(api_sandbox.admin_kubeconfig.read_text())
    ca = base64.b64decode(admin["clusters"][0]["cluster"]["certificate-authority-data"])
    with socket.socket() as probe:  # a port nothing listens on: a stopped API server
        probe.bind(("127.0.0.11", 0))
        stopped = f"https://127.0.0.11:{probe.getsockname()[1]}"
    cases = {
        "https://127.0.0.11:6443": (
            "answered 401 Unauthorized", "next:  use a kubeconfig with cluster-admin"),
        stopped: ("failed: connection refused (nothing listens there)",
                  f"next:  check that the API server at {stopped} runs and that the "
                  "kubeconfig /root/test.kubeconfig is the right one"),
    }
    for server, (answer, next_step) in cases.items():
        (root / "root").mkdir(exist_ok=True)
        (root / "root/test.kubeconfig").write_bytes(kubeconfig.render(
            cluster="c", server=server, user="u", context="c", ca_pem=ca, token="not-a-token"))
        with assert_host_unchanged(root, IGNORED):
            failed = on_master("--kubeconfig", "/root/test.kubeconfig", "csr", "list",
                               exit_code=12)
        assert f"error: LIST certificatesigningrequests.certificates.k8s.io on {server} " \
            f"{answer}" in failed.stderr, failed.stderr
        assert next_step in failed.stderr and "Traceback" not in failed.stderr
    (root / "root/test.kubeconfig").unlink()


def _csr(common_name: str, usages: list[str], dns_names: list[str],
         signer: str = "kubernetes.io/kube-apiserver-client-kubelet") -> dict[str, object]:
    key = certs.new_key()
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
        x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "system:nodes"),
        x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)]))
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in dns_names]), critical=False)
    pem = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"generateName": "csr-"},
            "spec": {"request": base64.b64encode(pem).decode(), "signerName": signer,
                     "usages": ["digital signature", "key encipherment", *usages]}}


def _node_client(root: Path, node: str) -> KubeClient:
    """A kubelet's identity on the recovery API: a client cert from its CA."""
    recovery = root / "etc/kubernetes/static-pod-resources/recovery-kube-apiserver-pod"
    ca = certs.Issued(x509.load_pem_x509_certificate((recovery / "serving-ca.crt").read_bytes()),
                      serialization.load_pem_private_key(
                          (recovery / "serving-ca.key").read_bytes(), None))  # type: ignore[arg-type]
    pair = certs.issue(ca, common_name=f"system:node:{node}", organizations=["system:nodes"],
                       server=False, days=1)
    return KubeClient(yaml.safe_load(kubeconfig.render(
        cluster="recovery", server="https://localhost:7443", user=node, context=node,
        ca_pem=(recovery / "serving-ca.crt").read_bytes(), client_cert_pem=pair.cert_pem(),
        client_key_pem=pair.key_pem())), node, timeout=10)


def _bootstrap_client(admin: KubeClient) -> KubeClient:
    """A new kubelet's identity: the node-bootstrapper token, on the cluster's API."""
    token = admin.get("Secret", "node-bootstrapper-token",
                      "openshift-machine-config-operator") or {}
    return KubeClient(yaml.safe_load(kubeconfig.render(
        cluster="sandbox", server="https://127.0.0.11:6443", user="kubelet", context="kubelet",
        ca_pem=secret_value(token, "ca.crt"), token=secret_value(token, "token").decode())),
        "bootstrap", timeout=10)


def test_csr_verdicts_and_approval_on_real_csrs(api_sandbox: Sandbox, on_master) -> None:  # type: ignore[no-untyped-def]
    root = api_sandbox.root(0)
    admin = _recovery_client(root)
    master0 = _node_client(root, "master-0")
    bootstrap = _bootstrap_client(admin)
    serving = "kubernetes.io/kubelet-serving"
    valid_client = bootstrap.create(_csr("system:node:master-0", ["client auth"], []))
    valid_serving = master0.create(_csr("system:node:master-0", ["server auth"],
                                        ["master-0"], serving))
    other_node = master0.create(_csr("system:node:master-2", ["server auth"],
                                     ["master-2"], serving))
    not_a_node = admin.create(_csr("system:node:master-0", ["server auth"],
                                   ["master-0"], serving))
    names = {n: obj["metadata"]["name"] for n, obj in (
        ("valid_client", valid_client), ("valid_serving", valid_serving),
        ("other_node", other_node), ("not_a_node", not_a_node))}

    listed = {row["name"]: row for row in on_master("csr", "list").json_lines()[-1]["csrs"]}
    assert listed[names["valid_client"]]["valid"] and listed[names["valid_serving"]]["valid"]
    assert listed[names["valid_client"]]["requestor"] == BOOTSTRAPPER
    assert not listed[names["other_node"]]["valid"]
    assert "master-2" in listed[names["other_node"]]["reason"]
    assert not listed[names["not_a_node"]]["valid"]
    assert "system:admin" in listed[names["not_a_node"]]["reason"]

    refused = on_master("csr", "approve", names["other_node"], exit_code=4)
    assert "master-2" in refused.stderr
    on_master("csr", "approve", "--all-valid")
    for key, name in names.items():
        conditions = ((admin.get("CertificateSigningRequest", name) or {}).get("status")
                      or {}).get("conditions") or []
        approved = any(c["type"] == "Approved" for c in conditions)
        assert approved == key.startswith("valid"), f"{key}: {conditions}"


def test_regenerate_killed_part_way_is_resumed_then_rolled_back(api_sandbox: Sandbox) -> None:
    manifests = api_sandbox.root(0) / "etc/kubernetes/manifests"
    names = ("kube-apiserver-pod.yaml", "kube-controller-manager-pod.yaml",
             "kube-scheduler-pod.yaml")
    before = {n: (manifests / n).read_bytes() for n in names}
    killed = command(api_sandbox, 0, "regenerate-certificates", "--yes",
                     kill_after="write-pod-files")
    assert killed.returncode == -9, killed.stderr
    status = command(api_sandbox, 0, "status").stdout
    assert "done     write-pod-files" in status and "pending  annotate-manifests" in status
    assert {n: (manifests / n).read_bytes() for n in names} == before

    resumed = command(api_sandbox, 0, "resume")
    assert resumed.returncode == 0, resumed.stderr
    for name in names:
        pod = yaml.safe_load((manifests / name).read_text())
        assert "force-triggered-by-fix-certs-at" in pod["metadata"]["annotations"]
    rolled = command(api_sandbox, 0, "rollback", "--yes")
    assert rolled.returncode == 0, rolled.stderr
    assert {n: (manifests / n).read_bytes() for n in names} == before


def test_destroy_removes_exactly_what_create_made(api_sandbox: Sandbox, on_master) -> None:  # type: ignore[no-untyped-def]
    root = api_sandbox.root(0)
    recovery = root / "etc/kubernetes/static-pod-resources/recovery-kube-apiserver-pod"
    assert recovery.is_dir()
    (recovery / "notes.txt").write_text("an operator's file\n")
    out = on_master("recovery-apiserver", "destroy")
    assert "notes.txt" in out.stdout
    assert [p.name for p in recovery.iterdir()] == ["notes.txt"]
    assert not (root / "etc/kubernetes/manifests/recovery-kube-apiserver-pod.yaml").exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", 7443), timeout=2).close()
    (recovery / "notes.txt").unlink()
    recovery.rmdir()
    on_master("recovery-apiserver", "destroy", exit_code=4)


@contextlib.contextmanager
def _without_certificates_v1(sandbox: Sandbox, admin: KubeClient) -> Iterator[None]:
    """The sandbox's kube-apiserver restarted serving CSRs only as v1beta1, as OpenShift 4.3
    (Kubernetes 1.16) does; put back as it was after."""
    manifest = sandbox.root(0) / "etc/kubernetes/manifests/kube-apiserver-pod.yaml"
    revision = host_path_of(load_pod(manifest), "resource-dir", "kube-apiserver-pod.yaml")
    config = sandbox.root(0) / revision.lstrip("/") / "configmaps/config/config.yaml"
    original = config.read_bytes()

    def restart(with_v1: bool) -> None:
        stamp = dt.datetime.now(dt.UTC).isoformat()
        manifest.write_bytes(annotated(load_pod(manifest), "test/restarted-at", stamp))

        def serves_as_asked() -> bool:
            if not admin.answers():
                return False
            try:
                CertificatesV1Api(admin.api).list_certificate_signing_request(
                    limit=1, _request_timeout=5)
            except ApiException as exc:
                return exc.status == 404 and not with_v1
            except HTTPError:  # the old process stopped since it answered
                return False
            return with_v1

        wait_until(serves_as_asked, timeout=API_TIMEOUT, next_step="read the sandbox logs",
                   what=f"kube-apiserver to restart {'with' if with_v1 else 'without'} "
                   "certificates.k8s.io/v1")

    doc = yaml.safe_load(original)
    doc.setdefault("apiServerArguments", {})["runtime-config"] = ["certificates.k8s.io/v1=false"]
    config.write_text(yaml.safe_dump(doc))
    try:
        restart(with_v1=False)
        yield
    finally:
        config.write_bytes(original)
        restart(with_v1=True)


def test_csrs_are_listed_and_approved_where_only_v1beta1_is_served(
        api_sandbox: Sandbox, on_master) -> None:  # type: ignore[no-untyped-def]
    admin = KubeClient.from_file(api_sandbox.admin_kubeconfig, timeout=10)
    on_admin = ("--kubeconfig", str(api_sandbox.admin_kubeconfig))
    with _without_certificates_v1(api_sandbox, admin):
        request = {**_csr("system:node:master-0", ["client auth"], []),
                   "apiVersion": "certificates.k8s.io/v1beta1"}
        made = CustomObjectsApi(_bootstrap_client(admin).api).create_cluster_custom_object(
            *V1BETA1, request)
        name = made["metadata"]["name"]
        listed = {row["name"]: row for row in
                  on_master(*on_admin, "csr", "list").json_lines()[-1]["csrs"]}
        assert listed[name]["valid"] and listed[name]["state"] == "Pending"
        assert listed[name]["requestor"] == BOOTSTRAPPER
        on_master(*on_admin, "csr", "approve", name)
        status = CustomObjectsApi(admin.api).get_cluster_custom_object(*V1BETA1, name)["status"]
        assert [c["type"] for c in status["conditions"]] == ["Approved"]
