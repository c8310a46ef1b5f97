"""How the fixtures beside this file were made: real values written by kube-apiserver v1.20
into a sandbox's etcd, and what kubectl showed of the same objects.

Run once, from the repository root, in a private network namespace (the sandbox's fixed
loopback addresses):

    unshare --net bash -c 'ip link set lo up; \
        .venv/bin/python tests/unit/data/objects/make_fixtures.py'

It writes `<name>.bin` (the etcd value, byte for byte), `<name>.kubectl.json` (`kubectl get
-o json`, managedFields dropped to keep the files small) and `encryption-config.yaml` (the
sandbox's throw-away aescbc key for secrets).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from toolbox.sandbox.binaries import find_kube_apiserver
from toolbox.sandbox.cluster import Sandbox

HERE = Path(__file__).resolve().parent
NAMESPACE = "recovery-demo"
ENCRYPTION_CONFIG = ("etc/kubernetes/static-pod-resources/kube-apiserver-pod-10/secrets/"
                     "encryption-config/encryption-config")
LOGO = bytes(range(0, 256, 17)) + b"\x00\xff"  # not UTF-8: must land in binaryData

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {"group": "example.com", "scope": "Namespaced",
             "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                 "openAPIV3Schema": {"type": "object",
                                     "x-kubernetes-preserve-unknown-fields": True}}}]},
}
LABELS = {"app.kubernetes.io/name": "web", "tier": "frontend"}
POD_TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": LABELS},
    "spec": {"containers": [{"name": "web", "image": "registry.example/web:1.4"}]},
}

# name of the fixture -> (kubectl resource, namespaced?, object to create)
OBJECTS: dict[str, tuple[str, bool, dict[str, Any]]] = {
    "namespace": ("namespace", False, {
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": NAMESPACE, "labels": {"team": "storage"},
                     "annotations": {"openshift.io/description": "fixtures for decoding"}}}),
    "configmap": ("configmap", True, {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "app-config", "namespace": NAMESPACE, "labels": LABELS,
                     "annotations": {"example.com/owner": "team storage"}},
        "data": {"app.properties": "mode=safe\nretries=3\n", "greeting": "héllo, wörld"},
        "binaryData": {"logo.bin": base64.b64encode(LOGO).decode()}}),
    "secret": ("secret", True, {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
        "metadata": {"name": "db-credentials", "namespace": NAMESPACE,
                     "labels": {"app.kubernetes.io/name": "db"}},
        "data": {"username": base64.b64encode(b"admin").decode(),
                 "password": base64.b64encode(b"s3cr\x00t-\xff").decode()}}),
    "deployment": ("deployment", True, {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NAMESPACE, "labels": LABELS},
        "spec": {"replicas": 2, "selector": {"matchLabels": LABELS},
                 "template": POD_TEMPLATE}}),
    # The sandbox runs no controller manager: the ReplicaSet a Deployment would own is made
    # by hand, owned by the Deployment, with a finalizer, then deleted (deletionTimestamp).
    "replicaset": ("replicaset", True, {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-5d8f7c9b4", "namespace": NAMESPACE,
                     "labels": {**LABELS, "pod-template-hash": "5d8f7c9b4"},
                     "annotations": {"deployment.kubernetes.io/revision": "1"},
                     "finalizers": ["example.com/keep-until-reviewed"]},
        "spec": {"replicas": 2, "selector": {"matchLabels": LABELS},
                 "template": POD_TEMPLATE}}),
    "widget": ("widget.example.com", True, {
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "blue", "namespace": NAMESPACE, "labels": {"colour": "blue"}},
        "spec": {"size": 3, "parts": ["axle", "wheel"]}}),
}
ETCD_KEYS = {
    "namespace": f"/kubernetes.io/namespaces/{NAMESPACE}",
    "configmap": f"/kubernetes.io/configmaps/{NAMESPACE}/app-config",
    "secret": f"/kubernetes.io/secrets/{NAMESPACE}/db-credentials",
    "deployment": f"/kubernetes.io/deployments/{NAMESPACE}/web",
    "replicaset": f"/kubernetes.io/replicasets/{NAMESPACE}/web-5d8f7c9b4",
    "widget": f"/kubernetes.io/example.com/widgets/{NAMESPACE}/blue",
}


def kubectl(sb: Sandbox, *args: str, stdin: dict[str, Any] | None = None) -> str:
    out = subprocess.run(["/usr/bin/kubectl", f"--kubeconfig={sb.admin_kubeconfig}", *args],
                         input=json.dumps(stdin) if stdin else None, capture_output=True,
                         text=True, timeout=60)
    if out.returncode:
        sys.exit(f"kubectl {' '.join(args)}: {out.stderr}")
    return out.stdout


def etcd_value(sb: Sandbox, key: str) -> bytes:
    tls = sb.client_tls
    out = subprocess.run([str(sb.tools_dir / "etcdctl"), "--endpoints=https://127.0.0.11:2379",
                          f"--cacert={tls.ca}", f"--cert={tls.cert}", f"--key={tls.key}",
                          "get", key, "-w", "json"],
                         capture_output=True, text=True, timeout=30, check=True)
    kvs = json.loads(out.stdout).get("kvs") or []
    if len(kvs) != 1:
        sys.exit(f"etcd has no {key}")
    return base64.b64decode(kvs[0]["value"])


def main() -> None:
    binary = find_kube_apiserver()
    if binary is None:
        sys.exit("no kube-apiserver: bash scripts/build-kubernetes.sh")
    with tempfile.TemporaryDirectory() as tmp:
        sb = Sandbox.up(Path(tmp) / "sandbox", masters=1, etcd="3.5", kube_apiserver=binary)
        try:
            kubectl(sb, "create", "-f", "-", stdin=WIDGET_CRD)
            kubectl(sb, "wait", "--for=condition=Established", "--timeout=60s",
                    "crd/widgets.example.com")
            created = {}
            for name, (_, _, obj) in OBJECTS.items():
                if name == "replicaset":
                    owner = created["deployment"]["metadata"]
                    obj["metadata"]["ownerReferences"] = [{
                        "apiVersion": "apps/v1", "kind": "Deployment", "name": owner["name"],
                        "uid": owner["uid"], "controller": True,
                        "blockOwnerDeletion": True}]
                created[name] = json.loads(kubectl(sb, "create", "-o", "json", "-f", "-",
                                                   stdin=obj))
            kubectl(sb, "delete", "--wait=false", "-n", NAMESPACE, "replicaset/web-5d8f7c9b4")
            for name, (resource, namespaced, obj) in OBJECTS.items():
                where = ["-n", NAMESPACE] if namespaced else []
                shown = json.loads(kubectl(sb, "get", "-o", "json", *where,
                                           f"{resource}/{obj['metadata']['name']}"))
                assert shown["metadata"]["uid"] == created[name]["metadata"]["uid"]
                shown["metadata"].pop("managedFields", None)
                (HERE / f"{name}.kubectl.json").write_text(json.dumps(shown, indent=1) + "\n")
                (HERE / f"{name}.bin").write_bytes(etcd_value(sb, ETCD_KEYS[name]))
            (HERE / "encryption-config.yaml").write_bytes(
                (sb.root(0) / ENCRYPTION_CONFIG).read_bytes())
        finally:
            sb.down()


if __name__ == "__main__":
    main()
