"""The expired-certificates drill (guide 3.4) on a sandbox with a real kube-apiserver."""

from __future__ import annotations

import base64
import datetime as dt
import socket
import ssl
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from toolbox.context import Context
from toolbox.errors import ApiUnavailable
from toolbox.host.runtime import Runtime
from toolbox.journal import plan_and_execute
from toolbox.kube.client import KubeClient, ObjectStore, connect
from toolbox.kube.manifests import host_path_of, load_pod
from toolbox.pki import certs, rotation
from toolbox.procedures import (
    csr,
    force_redeploy,
    kubelet,
    recovery_apiserver,
    regenerate_certs,
)
from toolbox.procedures import kubeconfig as kubeconfig_procedure
from toolbox.sandbox import controlplane
from toolbox.sandbox.cluster import Sandbox
from toolbox.sandbox.drill_report import DrillReport, check
from toolbox.sandbox.layout import MasterSpec
from toolbox.waiting import wait_until

RESTART_TIMEOUT = 180.0
NODE = "master-0"


def run(sandbox: Sandbox, ctx: Context, report: DrillReport) -> None:
    admin = KubeClient.from_file(sandbox.admin_kubeconfig, timeout=10)
    with report.phase("expire the control-plane certificates"):
        sandbox.expire_control_plane()
        refusal: list[str] = []
        wait_until(lambda: _refused(admin, refusal), timeout=RESTART_TIMEOUT,
                   what="kube-apiserver to restart with the expired certificates",
                   next_step=f"read {sandbox.master_dir(0)}/logs")
    report.facts.append(f"before: the installer's admin kubeconfig is refused: {refusal[0]}")
    with report.phase("recovery-apiserver create"):
        created = plan_and_execute(ctx, recovery_apiserver.PROCEDURE, None)
    with report.phase("regenerate-certificates"):
        regenerated = plan_and_execute(ctx, regenerate_certs.PROCEDURE, None)
    with report.phase("kube-apiserver restarts with them"):
        admin.wait_ready(RESTART_TIMEOUT, next_step=f"read {sandbox.master_dir(0)}/logs")
    with report.phase("control-plane force-redeploy"):
        reason = force_redeploy.run(connect(ctx))
    with report.phase("kubeconfig recover --install"):
        recovered = kubeconfig_procedure.install(
            ctx, kubeconfig_procedure.build(connect(ctx)))
    with report.phase("kubelet reset"):
        plan_and_execute(ctx, kubelet.PROCEDURE, None)
    with report.phase("kubelet CSR: create, list, approve"):
        bootstrap = KubeClient.from_file(ctx.paths.bootstrap_kubeconfig, ctx.paths.host,
                                         timeout=10)
        made = bootstrap.create(node_client_csr(NODE))
        reviews = csr.list_csrs(connect(ctx), expected_nodes={NODE})
        approved = csr.approve(connect(ctx), None, all_valid=True, expected_nodes={NODE})
    with report.phase("recovery-apiserver destroy"):
        recovery_apiserver.destroy(ctx)

    _check_api(admin, report)
    _check_disk(ctx, admin, report)
    check(all((admin.get(kind, "cluster") or {}).get("spec", {})
              .get("forceRedeploymentReason") == reason for kind in force_redeploy.OPERATORS),
          "an operator resource lacks forceRedeploymentReason")
    requestor = made.get("spec", {}).get("username", "")
    check(requestor == "system:serviceaccount:openshift-machine-config-operator:"
          "node-bootstrapper", f"the recovered kubeconfig authenticated as {requestor!r}")
    check(made["metadata"]["name"] in approved.approved and
          any(r.name == made["metadata"]["name"] and r.valid for r in reviews),
          f"the kubelet's CSR was not approved: {approved}")
    state = (admin.get("CertificateSigningRequest", made["metadata"]["name"]) or {})
    check(any(c.get("type") == "Approved" for c in state.get("status", {}).get("conditions")
              or []), "the API does not show the CSR approved")
    kubelet_dir = ctx.paths.host("/var/lib/kubelet")
    check(not (kubelet_dir / "pki").exists() and any(kubelet_dir.glob("pki.ocp-recovery-*"))
          and Runtime(ctx.executor).kubelet_active(),
          "kubelet reset did not move the old pki aside and restart kubelet")
    check(not ctx.paths.recovery_apiserver_manifest.exists()
          and not ctx.paths.recovery_apiserver_dir.exists() and not recovery_apiserver.listening(),
          "the recovery API server is not gone")
    report.facts += [
        f"recovery API server answered; its certificates were valid until {created.expires}",
        f"regenerate-certificates changed {len(regenerated.changes)} objects and wrote "
        f"{len(regenerated.files)} files, keeping {len(regenerated.kept)} old ones",
        f"forceRedeploymentReason={reason} on the three operators",
        f"kubelet kubeconfig: {recovered.checked}; a CSR made with it was requested by "
        f"{requestor} and approved as a valid node client CSR",
        "kubelet pki and kubeconfig moved aside, kubelet active",
        "recovery API server gone: manifest, directory and port 7443",
    ]


def _refused(client: KubeClient, reason: list[str]) -> bool:
    try:
        client.check_ready()
    except ApiUnavailable as exc:
        if "expired" in exc.what:
            reason.append(exc.what.split("failed: ", 1)[-1])
            return True
    return False


def _check_api(admin: KubeClient, report: DrillReport) -> None:
    store = ObjectStore(admin)
    now = dt.datetime.now(dt.UTC)
    count = 0
    for chain in rotation.CHAINS:
        signer = rotation.secret_pair(store.get("Secret", chain.signer))
        check(signer is not None and not rotation.due(signer.cert, now),
              f"signer {chain.signer} is not valid in the API")
        assert signer is not None
        for target in chain.targets:
            pair = rotation.secret_pair(store.get("Secret", target.ref))
            check(pair is not None and not rotation.due(pair.cert, now)
                  and rotation.issued_by(pair.cert, signer.cert),
                  f"{target.ref} is not valid or not signed by {chain.signer}")
            count += 1
    report.facts.append(f"all {len(rotation.CHAINS)} signers and {count} certificates in the "
                        "API valid and signed by their signers")


def _check_disk(ctx: Context, admin: KubeClient, report: DrillReport) -> None:
    files = rotation.pod_files(ObjectStore(admin))
    for item in files:
        pod = load_pod(ctx.paths.manifests / item.manifest)
        path = ctx.paths.host(f"{host_path_of(pod, item.volume, item.manifest)}/"
                              f"{item.relative}")
        check(path.read_bytes() == item.data, f"{ctx.paths.shown(path)} differs from the API")
    for name in regenerate_certs.MANIFESTS:
        pod = load_pod(ctx.paths.manifests / name)
        check(regenerate_certs.ANNOTATION in (pod["metadata"].get("annotations") or {}),
              f"{name} is not annotated")
    served = _served_certificate((MasterSpec(0).ip, controlplane.API_PORT))
    lb_bundle = rotation.bundle_certificates(ObjectStore(admin).get(
        "ConfigMap", rotation.Ref(rotation.KAS_OPERATOR, "loadbalancer-serving-ca")))
    check(any(rotation.issued_by(served, ca) for ca in lb_bundle)
          and not rotation.due(served, dt.datetime.now(dt.UTC)),
          "kube-apiserver does not serve a valid certificate of the load-balancer signer")
    report.facts += [
        f"{len(files)} certificate files of the three pods on disk equal the API's; "
        "the three manifests annotated",
        f"kube-apiserver serves a certificate valid until "
        f"{served.not_valid_after_utc:%Y-%m-%d}, signed by the load-balancer serving CA",
    ]


def _served_certificate(address: tuple[str, int]) -> x509.Certificate:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # we only read what is served, then check it
    with socket.create_connection(address, timeout=5) as raw, \
            context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def node_client_csr(node: str) -> dict[str, Any]:
    """The CSR a kubelet bootstraps with: O=system:nodes, CN=system:node:<node>."""
    key = certs.new_key()
    request = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([
                   x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "system:nodes"),
                   x509.NameAttribute(x509.NameOID.COMMON_NAME, f"system:node:{node}")]))
               .sign(key, hashes.SHA256()))
    pem = request.public_bytes(serialization.Encoding.PEM)
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"generateName": "csr-"},
            "spec": {"request": base64.b64encode(pem).decode(),
                     "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                     "usages": ["digital signature", "key encipherment", "client auth"]}}
