"""The certrotation rules on an in-memory store: what is regenerated, when, and how."""

from __future__ import annotations

import datetime as dt

from toolbox.pki import rotation
from toolbox.pki.rotation import KAS, KAS_CLIENT_CA, MemoryStore, Ref

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
INFRA = {"apiServerURL": "https://api.example.test:6443",
         "apiServerInternalURI": "https://api-int.example.test:6443"}


def _cert(store: MemoryStore, ref: Ref):  # type: ignore[no-untyped-def]
    pair = rotation.secret_pair(store.get("Secret", ref))
    assert pair is not None
    return pair.cert


def test_an_empty_store_gets_every_chain_and_a_second_run_changes_nothing() -> None:
    store = MemoryStore()
    first = rotation.rotate(store, NOW, INFRA)
    made = {c.ref for c in first}
    for chain in rotation.CHAINS:
        assert chain.signer in made and chain.bundle in made
        for target in chain.targets:
            cert = _cert(store, target.ref)
            signer = _cert(store, chain.signer)
            assert rotation.issued_by(cert, signer)
    lb = _cert(store, Ref(KAS, "internal-loadbalancer-serving-certkey"))
    assert rotation.hostnames_of(lb) == ("api-int.example.test",)
    assert rotation.rotate(store, NOW, INFRA) == []


def test_past_the_refresh_point_targets_are_renewed_and_long_signers_kept() -> None:
    store = MemoryStore()
    rotation.rotate(store, NOW, INFRA)
    localhost_signer = _cert(store, Ref(rotation.KAS_OPERATOR, "localhost-serving-signer"))
    later = NOW + dt.timedelta(days=25)  # 30-day targets refresh after 24 days
    changes = rotation.rotate(store, later, INFRA)
    renewed = {c.ref for c in changes}
    assert Ref(KAS, "localhost-serving-cert-certkey") in renewed
    assert Ref(rotation.KAS_OPERATOR, "localhost-serving-signer") not in renewed
    assert _cert(store, Ref(rotation.KAS_OPERATOR, "localhost-serving-signer")) == \
        localhost_signer
    assert rotation.due(_cert(store, Ref(KAS, "localhost-serving-cert-certkey")), later) == ""


def test_expired_signer_is_replaced_and_dropped_from_its_bundle() -> None:
    store = MemoryStore()
    rotation.rotate(store, NOW, INFRA)
    signer_ref = Ref(rotation.KAS_OPERATOR, "kube-control-plane-signer")
    old = _cert(store, signer_ref)
    later = NOW + dt.timedelta(days=400)
    rotation.rotate(store, later, INFRA)
    new = _cert(store, signer_ref)
    assert new != old and rotation.due(new, later) == ""
    bundle = rotation.bundle_certificates(
        store.get("ConfigMap", Ref(rotation.KAS_OPERATOR, "kube-control-plane-signer-ca")))
    assert bundle == [new]
    client_ca = rotation.bundle_certificates(store.get("ConfigMap", KAS_CLIENT_CA))
    assert new in client_ca and old not in client_ca
    scheduler = _cert(store, Ref(rotation.CONFIG_MANAGED, "kube-scheduler-client-cert-key"))
    assert rotation.issued_by(scheduler, new)


def test_the_csr_signer_is_an_intermediate_ca_copied_for_the_controller_manager() -> None:
    store = MemoryStore()
    rotation.rotate(store, NOW, INFRA)
    csr_signer = _cert(store, Ref(rotation.KCM_OPERATOR, "csr-signer"))
    from cryptography import x509
    assert csr_signer.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert _cert(store, rotation.CSR_SIGNER_FOR_KCM) == csr_signer
    published = rotation.bundle_certificates(
        store.get("ConfigMap", rotation.CSR_CONTROLLER_CA_PUBLISHED))
    assert csr_signer in published
