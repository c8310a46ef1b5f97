"""Verdicts on kubelet CSRs built with cryptography, as the API returns them."""

from __future__ import annotations

import base64
import ipaddress
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from toolbox.errors import InvalidInput
from toolbox.kube.csr import BOOTSTRAPPER, CLIENT_SIGNER, SERVING_SIGNER, review
from toolbox.procedures.csr import approval_body, choose, sorted_reviews

CLIENT_USAGES = ["digital signature", "key encipherment", "client auth"]
SERVING_USAGES = ["digital signature", "key encipherment", "server auth"]


def request_pem(cn: str, organizations: tuple[str, ...] = ("system:nodes",),
                dns: tuple[str, ...] = (), ips: tuple[str, ...] = (),
                emails: tuple[str, ...] = ()) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([*(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o)
                        for o in organizations),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    sans += [x509.RFC822Name(e) for e in emails]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    pem = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    return base64.b64encode(pem).decode()


def csr(name: str, request: str, *, username: str, usages: list[str],
        signer: str | None = None, conditions: list[dict[str, str]] | None = None
        ) -> dict[str, Any]:
    spec: dict[str, Any] = {"request": request, "username": username, "usages": usages,
                            "groups": ["system:authenticated"]}
    if signer:
        spec["signerName"] = signer
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": name, "resourceVersion": "7"}, "spec": spec,
            "status": {"conditions": conditions} if conditions else {}}


def client_csr(name: str = "csr-client", node: str = "master-1", **kw: Any) -> dict[str, Any]:
    return csr(name, request_pem(f"system:node:{node}"), username=BOOTSTRAPPER,
               usages=CLIENT_USAGES, signer=CLIENT_SIGNER, **kw)


def serving_csr(name: str = "csr-serving", node: str = "master-1",
                requestor: str = "system:node:master-1") -> dict[str, Any]:
    return csr(name, request_pem(f"system:node:{node}", dns=(node,), ips=("10.0.0.11",)),
               username=requestor, usages=SERVING_USAGES, signer=SERVING_SIGNER)


def test_bootstrap_client_csr_is_valid() -> None:
    verdict = review(client_csr())
    assert (verdict.valid, verdict.approvable, verdict.kind, verdict.state) == \
        (True, True, "client", "Pending")
    assert verdict.node_name == "master-1"
    assert "node-bootstrapper service account" in verdict.reason


def test_client_renewal_by_the_node_itself_without_key_encipherment_is_valid() -> None:
    obj = csr("renew", request_pem("system:node:master-1"), username="system:node:master-1",
              usages=["digital signature", "client auth"])
    verdict = review(obj)
    assert verdict.valid, verdict.reason
    assert "the node itself" in verdict.reason


def test_serving_csr_is_valid() -> None:
    verdict = review(serving_csr())
    assert (verdict.valid, verdict.kind, verdict.node_name) == (True, "serving", "master-1")
    assert verdict.reason == ("kubelet serving certificate for node master-1, requested by "
                              "the node itself")


def test_serving_csr_for_another_nodes_name_is_refused() -> None:
    verdict = review(serving_csr(node="master-2", requestor="system:node:master-1"))
    assert not verdict.valid and not verdict.approvable
    assert verdict.reason == "asks for node master-2 but was requested by system:node:master-1"


def test_server_usage_from_a_non_node_requestor_is_refused() -> None:
    verdict = review(serving_csr(requestor=BOOTSTRAPPER))
    assert not verdict.valid
    assert verdict.reason == f"server auth usage from a non-node requestor {BOOTSTRAPPER}"


def test_wrong_organization_is_refused() -> None:
    obj = csr("masters", request_pem("system:node:master-1", organizations=("system:masters",)),
              username=BOOTSTRAPPER, usages=CLIENT_USAGES)
    verdict = review(obj)
    assert not verdict.valid and verdict.node_name is None
    assert verdict.reason == "CSR subject is not O=system:nodes (it has O=system:masters)"


def test_already_approved_csr_is_not_approvable() -> None:
    approved = [{"type": "Approved", "status": "True", "reason": "AutoApproved"}]
    verdict = review(client_csr(conditions=approved))
    assert verdict.state == "Approved" and verdict.valid and not verdict.approvable
    assert "already Approved" in verdict.reason


def test_garbage_request_is_refused() -> None:
    verdict = review(csr("junk", base64.b64encode(b"hello").decode(), username=BOOTSTRAPPER,
                         usages=CLIENT_USAGES))
    assert not verdict.valid and verdict.kind == "unknown"
    assert verdict.reason.startswith("spec.request is not a PEM certificate request")
    verdict = review(csr("junk", "%%%", username=BOOTSTRAPPER, usages=CLIENT_USAGES))
    assert "not base64" in verdict.reason


def test_client_csr_with_sans_or_extra_usages_is_refused() -> None:
    obj = csr("sans", request_pem("system:node:master-1", dns=("evil.example",)),
              username=BOOTSTRAPPER, usages=CLIENT_USAGES)
    assert "DNS:evil.example" in review(obj).reason
    obj = client_csr()
    obj["spec"]["usages"] = [*CLIENT_USAGES, "code signing"]
    assert "are not exactly digital signature, client auth" in review(obj).reason


def test_serving_csr_with_an_email_san_or_wrong_signer_is_refused() -> None:
    obj = csr("mail", request_pem("system:node:master-1", dns=("master-1",),
                                  emails=("a@b.c",)),
              username="system:node:master-1", usages=SERVING_USAGES)
    assert "also asks for email:a@b.c" in review(obj).reason
    obj = serving_csr()
    obj["spec"]["signerName"] = "kubernetes.io/kube-apiserver-client"
    assert "expected kubernetes.io/kubelet-serving" in review(obj).reason


def test_unexpected_node_is_refused() -> None:
    verdict = review(client_csr(node="worker-9"), expected_nodes={"master-0", "master-1"})
    assert not verdict.valid
    assert verdict.reason == ("node worker-9 is not one of the expected nodes "
                              "(master-0, master-1)")


def test_pending_first_then_by_name_and_the_approval_condition() -> None:
    denied = [{"type": "Denied", "status": "True"}]
    reviews = sorted_reviews([review(client_csr("a", conditions=denied)),
                              review(serving_csr("c")), review(client_csr("b"))])
    assert [(r.name, r.state) for r in reviews] == [("b", "Pending"), ("c", "Pending"),
                                                    ("a", "Denied")]
    obj = client_csr("b")
    body = approval_body(obj, review(obj))
    [condition] = body["status"]["conditions"]
    assert condition["type"] == "Approved" and condition["reason"] == "OcpRecoveryApprove"
    assert condition["message"].startswith("approved by ocp-recovery csr approve: kubelet "
                                           "client certificate for node master-1")
    assert body["metadata"]["resourceVersion"] == "7" and obj["status"] == {}


def test_choose_approves_only_pending_valid_ones_and_says_why_not() -> None:
    approved = [{"type": "Approved", "status": "True"}]
    reviews = sorted_reviews([
        review(client_csr("good")), review(serving_csr("forged", node="master-2")),
        review(client_csr("done", conditions=approved))])
    chosen, refused = choose(reviews, None, all_valid=True)
    assert [r.name for r in chosen] == ["good"]
    assert refused == [("forged", "asks for node master-2 but was requested by "
                                  "system:node:master-1")]
    chosen, refused = choose(reviews, ["forged", "done"], all_valid=False)
    assert chosen == [] and [name for name, _ in refused] == ["forged", "done"]
    assert "already Approved" in refused[1][1]
    with pytest.raises(InvalidInput, match="no CSR named nope"):
        choose(reviews, ["good", "nope"], all_valid=False)
    with pytest.raises(InvalidInput, match="not both"):
        choose(reviews, ["good"], all_valid=True)
    with pytest.raises(InvalidInput):
        choose(reviews, None, all_valid=False)
    assert choose([], None, all_valid=True) == ([], [])
