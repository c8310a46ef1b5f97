"""`signer manifest` / `tokenize-signer.sh`: the signer pod the guide creates with `oc`,
checked by deserializing it into the Kubernetes client's models."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from kubernetes.client import ApiClient

from toolbox.procedures.signer import render_manifest


def models(text: str) -> dict[str, object]:
    client = ApiClient()
    items = yaml.safe_load(text)["items"]
    return {item["kind"]: client._ApiClient__deserialize(item, f"V1{item['kind']}")  # type: ignore[attr-defined]
            for item in items}


def test_rendered_signer_pod() -> None:
    rendered = render_manifest("ip-10-0-143-125", "registry.local/ocp-recovery:1",
                               ["etcd-1.example.com", "etcd-2.example.com"])
    objects = models(rendered.manifest)
    pod, secret = objects["Pod"], objects["Secret"]
    assert pod.metadata.namespace == "openshift-config" == secret.metadata.namespace  # type: ignore[attr-defined]
    spec = pod.spec  # type: ignore[attr-defined]
    assert spec.node_selector == {"kubernetes.io/hostname": "ip-10-0-143-125"}
    assert spec.host_network is True
    container = spec.containers[0]
    assert container.image == "registry.local/ocp-recovery:1"
    assert container.ports[0].container_port == 9943
    assert container.command[-4:] == ["--expect", "etcd-1.example.com", "--expect",
                                      "etcd-2.example.com"]
    assert container.env[0].value_from.secret_key_ref.name == secret.metadata.name  # type: ignore[attr-defined]
    assert secret.string_data["token"] == rendered.token  # type: ignore[attr-defined]
    assert len(rendered.token) >= 32
    mounts = {m.mount_path for m in container.volume_mounts}
    assert "/etc/kubernetes/static-pod-resources/etcd-member" in mounts


def test_each_rendering_has_a_new_token() -> None:
    a = render_manifest("h", "i", ["etcd-1.x"])
    b = render_manifest("h", "i", ["etcd-1.x"])
    assert a.token != b.token


def test_tokenize_signer_writes_a_private_file(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "host"
    (root / "run/etcd").mkdir(parents=True)
    (root / "etc/kubernetes").mkdir(parents=True)
    (root / "run/etcd/environment").write_text("ETCD_DNS_NAME=etcd-0.example.com\n")
    out = tmp_path / "assets/manifests/kube-etcd-cert-signer.yaml"
    said = run_cli(["--host-root", str(root), "signer", "manifest", "ip-10-0-1-1",
                    "--output", str(out)]).stdout
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    pod = models(out.read_text())["Pod"]
    command = pod.spec.containers[0].command  # type: ignore[attr-defined]
    assert command[-4:] == ["--expect", "etcd-1.example.com", "--expect", "etcd-2.example.com"]
    token = next(line for line in said.splitlines() if line.startswith("token: "))[7:]
    assert token in out.read_text()
    assert os.path.basename(str(out)) in said
