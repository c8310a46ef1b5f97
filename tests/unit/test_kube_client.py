"""Loading a kubeconfig for the `kubernetes` client: file names are the host's, embedded keys
never reach the disk, and credentials that would run a program are refused."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import yaml

from toolbox.context import build_context
from toolbox.errors import InvalidInput
from toolbox.kube import config as kubeconfig
from toolbox.kube.client import KubeClient, connect
from toolbox.pki import certs


def test_file_names_in_a_host_kubeconfig_are_the_hosts(tmp_path: Path) -> None:
    root = tmp_path / "host"
    ca = certs.self_signed_ca("kube-apiserver-lb-signer")
    pair = certs.issue(ca, common_name="system:admin", server=False)
    (root / "etc/kubernetes/certs").mkdir(parents=True)
    (root / "etc/kubernetes/ca.crt").write_bytes(ca.cert_pem())
    (root / "etc/kubernetes/certs/admin.crt").write_bytes(pair.cert_pem())
    (root / "etc/kubernetes/certs/admin.key").write_bytes(pair.key_pem())
    doc = yaml.safe_load(kubeconfig.render(cluster="c", server="https://api:6443", user="u",
                                           context="c", ca_path="/etc/kubernetes/ca.crt"))
    # Relative names are from the kubeconfig's own (host) directory, as kubectl takes them.
    doc["users"][0]["user"] = {"client-certificate": "certs/admin.crt",
                               "client-key": "certs/admin.key"}
    (root / "etc/kubernetes/admin.kubeconfig").write_text(yaml.safe_dump(doc))
    ctx = build_context({}, host_root=str(root), kubeconfig="/etc/kubernetes/admin.kubeconfig")

    client = connect(ctx)
    configuration = client.api.configuration
    assert configuration.ssl_ca_cert == str(root / "etc/kubernetes/ca.crt")
    assert configuration.cert_file == str(root / "etc/kubernetes/certs/admin.crt")
    assert configuration.key_file == str(root / "etc/kubernetes/certs/admin.key")
    assert client.server == "https://api:6443" and client.source == \
        "/etc/kubernetes/admin.kubeconfig"


def test_an_embedded_key_is_never_written_to_a_file(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The package writes `*-data` to temporary files, which a killed run would leave on
    disk with the key in them; ours are in memory."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ca = certs.self_signed_ca("admin-kubeconfig-signer")
    pair = certs.issue(ca, common_name="system:admin", server=False)
    client = KubeClient(yaml.safe_load(kubeconfig.render(
        cluster="c", server="https://api:6443", user="u", context="c", ca_pem=ca.cert_pem(),
        client_cert_pem=pair.cert_pem(), client_key_pem=pair.key_pem())), "test")
    key_file = client.api.configuration.key_file
    assert Path(key_file).read_bytes() == pair.key_pem()
    assert list(tmp_path.iterdir()) == []
    client.close()
    assert not Path(key_file).exists()


def test_credentials_that_run_a_program_are_refused() -> None:
    doc = yaml.safe_load(kubeconfig.render(cluster="c", server="https://api:6443", user="u",
                                           context="c"))
    doc["users"][0]["user"] = {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                                        "command": "/usr/bin/touch", "args": ["/tmp/ran"]}}
    with pytest.raises(InvalidInput, match="has an exec plugin, which ocp-recovery does "
                                           "not run") as refused:
        KubeClient(doc, "/root/.kube/config")
    assert "client certificate or a token" in refused.value.next_step
