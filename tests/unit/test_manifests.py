"""The CronJob's two variants as `oc apply -k` renders them (`kubectl kustomize`) and as the
API server reads them (the kubernetes client's models), and their batch/v1 overlays for
Kubernetes 1.21+; the off-site one running for real is in tests/image, the alerts in
tests/unit/test_alerts.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.image.conftest import (
    OFFSITE_VARIANT,
    PVC_VARIANT,
    REPO,
    ca_bundle_path_told,
    only,
    render,
)

SHARED_KINDS = ["ClusterRole", "CronJob", "Namespace", "PrometheusRule", "RoleBinding",
                "SecurityContextConstraints", "ServiceAccount"]
# Each variant's overlay for Kubernetes 1.21+ (OpenShift 4.8+): the CronJob as batch/v1.
K8S_1_21 = {OFFSITE_VARIANT: REPO / "manifests/backup-k8s-1.21",
            PVC_VARIANT: REPO / "manifests/backup-k8s-1.21/pvc"}
MODELS = {"Namespace": "V1Namespace", "ServiceAccount": "V1ServiceAccount",
          "ClusterRole": "V1ClusterRole", "RoleBinding": "V1RoleBinding",
          "PersistentVolumeClaim": "V1PersistentVolumeClaim", "ConfigMap": "V1ConfigMap",
          "Secret": "V1Secret",
          # batch/v1beta1 (what 4.3 serves) has the shape of V1CronJob.
          "CronJob": "V1CronJob"}


def deserialize_with_the_kubernetes_client(docs: list[dict[str, Any]]) -> None:
    from kubernetes.client import ApiClient

    api = ApiClient()
    for doc in docs:
        if doc["kind"] not in MODELS:
            continue  # an OpenShift or Prometheus kind the upstream client has no model for
        model = api._ApiClient__deserialize(doc, MODELS[doc["kind"]])  # type: ignore[attr-defined]
        assert model.metadata.name == doc["metadata"]["name"]
        if doc["kind"] == "CronJob":
            pod = model.spec.job_template.spec.template.spec
            assert pod.host_network and pod.restart_policy == "Never"
            assert model.spec.concurrency_policy == "Forbid"
            assert model.spec.job_template.spec.active_deadline_seconds > 0


def _pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod: dict[str, Any] = only(docs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return pod


@pytest.mark.parametrize(("variant", "own_kinds"),
                         [(OFFSITE_VARIANT, ["ConfigMap", "Secret"]),
                          (PVC_VARIANT, ["PersistentVolumeClaim"])], ids=["offsite", "pvc"])
def test_each_variant_renders_and_what_4_3_serves_accepts_it(variant: Path,
                                                             own_kinds: list[str]) -> None:
    docs = render(variant)
    assert sorted(d["kind"] for d in docs) == sorted(SHARED_KINDS + own_kinds)
    deserialize_with_the_kubernetes_client(docs)
    assert only(docs, "CronJob")["apiVersion"] == "batch/v1beta1"  # Kubernetes 1.16
    namespaced = [d for d in docs if d["kind"] not in
                  ("Namespace", "ClusterRole", "SecurityContextConstraints")]
    assert {d["metadata"]["namespace"] for d in namespaced} == {"ocp-recovery"}

    pod = _pod(docs)
    scc = only(docs, "SecurityContextConstraints")
    # OpenShift's SCC admission sees the volumes the service account token would add too.
    assert pod["automountServiceAccountToken"] is False
    used = {key for volume in pod["volumes"] for key in volume if key != "name"}
    assert used <= set(scc["volumes"]), used - set(scc["volumes"])
    [container] = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and security["capabilities"]["drop"] == ["ALL"]
    assert not security["privileged"] and not security["allowPrivilegeEscalation"]
    assert not scc["allowPrivilegedContainer"] and scc["requiredDropCapabilities"] == ["ALL"]

    # The alerts tested in tests/unit/test_alerts.py, where OpenShift 4.3's Prometheus loads
    # them: a namespace with the cluster-monitoring label.
    rule = only(docs, "PrometheusRule")
    assert rule["spec"] == yaml.safe_load((REPO / "manifests/backup/base/prometheusrule.yaml")
                                          .read_text())["spec"]
    namespace = only(docs, "Namespace")
    assert rule["metadata"]["namespace"] == namespace["metadata"]["name"]
    assert namespace["metadata"]["labels"]["openshift.io/cluster-monitoring"] == "true"


@pytest.mark.parametrize("variant", K8S_1_21, ids=["offsite", "pvc"])
def test_each_variant_has_a_batch_v1_overlay_for_kubernetes_1_21(variant: Path) -> None:
    docs = render(K8S_1_21[variant])
    deserialize_with_the_kubernetes_client(docs)
    [cronjob] = [d for d in docs if d["kind"] == "CronJob"]
    assert cronjob["apiVersion"] == "batch/v1"
    # Everything else as the variant renders it: the same objects, the same CronJob spec.
    expected = render(variant)
    only(expected, "CronJob")["apiVersion"] = "batch/v1"
    assert _by_identity(docs) == _by_identity(expected)


def _by_identity(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    by_identity = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    assert len(by_identity) == len(docs)
    return by_identity


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def _mounted_at(pod: dict[str, Any], container: dict[str, Any], configmap: str,
                key: str) -> tuple[str, bool]:
    """The container path where the ConfigMap's key is mounted, and whether the pod starts
    without it."""
    for volume in pod["volumes"]:
        source = volume.get("configMap", {})
        if source.get("name") != configmap:
            continue
        for item in source.get("items", []):
            if item["key"] == key:
                [mount] = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
                assert mount.get("readOnly") is True
                return f"{mount['mountPath']}/{item['path']}", source.get("optional", False)
    raise AssertionError(f"{configmap} {key} is not mounted")


def test_the_offsite_variant_takes_its_store_and_keys_where_the_operator_puts_them() -> None:
    docs = render(OFFSITE_VARIANT)
    pod = _pod(docs)
    [container] = pod["containers"]
    args = container["args"]
    env = {e["name"]: e for e in container["env"]}
    host_root = env["OCP_RECOVERY_HOST_ROOT"]["value"]
    configmap, secret = only(docs, "ConfigMap")["metadata"]["name"], \
        only(docs, "Secret")["metadata"]["name"]

    # The URL from the ConfigMap, expanded by the kubelet from the container's environment.
    assert _option(args, "--upload") == "$(S3_URL)"
    assert env["S3_URL"]["valueFrom"]["configMapKeyRef"] == {"name": configmap, "key": "url"}
    assert container["envFrom"] == [{"secretRef": {"name": secret}}]
    # --recipients-file names a host path: the container path without the host root.
    recipients = _mounted_at(pod, container, configmap, "recipients")
    assert recipients == (host_root + _option(args, "--recipients-file"), False)
    # The CA: optional both ways, and the path offsite-configmap.yaml tells the operator to
    # set is where the CronJob mounts the CA's key.
    ca = env["AWS_CA_BUNDLE"]["valueFrom"]["configMapKeyRef"]
    assert ca == {"name": configmap, "key": "AWS_CA_BUNDLE", "optional": True}
    told = ca_bundle_path_told()
    assert _mounted_at(pod, container, configmap, "ca-bundle.pem") == (told, True)
    assert not told.startswith(host_root + "/")  # boto3 reads it: a container path
    # Retention on both sides.
    assert int(_option(args, "--keep")) >= 1 and int(_option(args, "--keep-remote")) >= 1

    # The backups stay on the master, under a hostPath mounted at the same path in /host.
    directory = args[1]
    [state] = [v for v in pod["volumes"]
               if directory.startswith(v.get("hostPath", {}).get("path", "//") + "/")]
    [mount] = [m for m in container["volumeMounts"] if m["name"] == state["name"]]
    assert mount["mountPath"] == host_root + state["hostPath"]["path"]
    assert not mount.get("readOnly")


def test_the_pvc_variant_writes_to_its_claim() -> None:
    docs = render(PVC_VARIANT)
    pod = _pod(docs)
    [container] = pod["containers"]
    claim = only(docs, "PersistentVolumeClaim")["metadata"]["name"]
    [volume] = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert volume["persistentVolumeClaim"]["claimName"] == claim
    [mount] = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    host_root = {e["name"]: e.get("value") for e in container["env"]}["OCP_RECOVERY_HOST_ROOT"]
    assert mount["mountPath"] == host_root + container["args"][1]
    assert "--upload" not in container["args"] and "envFrom" not in container


@pytest.mark.parametrize("variant", [OFFSITE_VARIANT, PVC_VARIANT], ids=["offsite", "pvc"])
def test_the_backup_outcome_is_the_pods_termination_message(variant: Path) -> None:
    """The toolbox writes its JSON summary where the kubelet reads the termination message
    (`oc get pod -o yaml`: state.terminated.message), in both variants."""
    from kubernetes.client import ApiClient

    [container] = _pod(render(variant))["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    model = ApiClient()._ApiClient__deserialize(  # type: ignore[attr-defined]
        container, "V1Container")
    assert model.termination_message_path == "/dev/termination-log"
    assert model.termination_message_policy == "File"
    assert env["OCP_RECOVERY_TERMINATION_LOG"] == model.termination_message_path
