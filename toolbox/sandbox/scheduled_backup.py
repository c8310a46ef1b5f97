"""The scheduled-backup drill: the backup CronJob of manifests/backup applied with kubectl to
the sandbox's Kubernetes node (`sandbox up --kubernetes`) and run by the real controllers,
scheduler, kubelet and containerd: a Job from the CronJob and one by its schedule (off-site
variant, to the sandbox's Ceph store), one with master-0's etcd stopped, and the PVC variant's
scheduled Job held Pending by its unbound claim while `concurrencyPolicy: Forbid` holds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from toolbox.context import Context
from toolbox.errors import EtcdUnavailable, PreconditionFailed
from toolbox.kube.client import KubeClient
from toolbox.procedures import backup_list, offsite_verify, verify
from toolbox.sandbox.cluster import Sandbox
from toolbox.sandbox.drill_report import DrillReport, check
from toolbox.sandbox.node import NODE_NAME, TOOLBOX_IMAGE
from toolbox.store.encryption import new_identity
from toolbox.waiting import wait_until

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests/backup"
NAMESPACE = "ocp-recovery"
CRONJOB = "ocp-recovery-backup"
HOST_BACKUPS = "/var/lib/ocp-recovery/backups"
STORE_URL = "s3://backups/cluster-a"
PV_DIR = "/var/lib/sandbox-pv/backups"
JOB_TIMEOUT = 240.0      # scheduling, the container's start, a backup, an upload, a read-back
SCHEDULE_TIMEOUT = 150.0  # the next minute, plus the cronjob controller's 10 s sync
EVERY_MINUTE = "*/1 * * * *"
# Kinds the manifests hold that only OpenShift serves: their CRDs (schema only; nothing here
# enforces an SCC or loads a rule).
OPENSHIFT_KINDS = (("security.openshift.io", "SecurityContextConstraints",
                    "securitycontextconstraints", "Cluster"),
                   ("monitoring.coreos.com", "PrometheusRule", "prometheusrules", "Namespaced"))


class Kubectl:
    """The sandbox's own kubectl (its Kubernetes version, as `oc` matches its cluster)."""

    def __init__(self, sandbox: Sandbox):
        if sandbox.kubectl is None or not (sandbox.node_dir / "node.json").exists():
            raise PreconditionFailed(f"the sandbox in {sandbox.dir} has no Kubernetes node",
                                     next_step="ocp-recovery sandbox up --kubernetes")
        self.binary = str(sandbox.kubectl)
        self.env = {**os.environ, "KUBECONFIG": str(sandbox.admin_kubeconfig)}

    def __call__(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        done = subprocess.run([self.binary, *args], input=stdin, capture_output=True,
                              text=True, timeout=120, env=self.env)
        if check and done.returncode != 0:
            raise PreconditionFailed(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}",
                                     next_step="read the sandbox's node logs")
        return done.stdout


def run(sandbox: Sandbox, ctx: Context, report: DrillReport) -> None:
    if not MANIFESTS.is_dir():
        raise PreconditionFailed(f"no manifests at {MANIFESTS}",
                                 next_step="run the drill from an ocp-recovery source checkout")
    store = sandbox.object_store
    assert store is not None
    kubectl = Kubectl(sandbox)
    api = KubeClient.from_file(sandbox.admin_kubeconfig, timeout=15)
    identity_text, recipient = new_identity()
    # The operator's private key, where the drill's verify (a host path) reads it.
    identity = "/root/operator-identity.txt"
    identity_file = sandbox.root(0) / identity.lstrip("/")
    identity_file.parent.mkdir(parents=True, exist_ok=True)
    identity_file.write_text(identity_text)
    identity_file.chmod(0o600)
    with report.phase("kubectl apply -k (off-site variant)"):
        kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(
            [_crd(*kind) for kind in OPENSHIFT_KINDS]))
        for _, kind, plural, _ in OPENSHIFT_KINDS:
            wait_until(_served(kubectl, plural), timeout=60,
                       what=f"the {kind} CRD to be served", next_step="kubectl get crd")
        offsite = _overlay(sandbox.dir / "cronjob-offsite", MANIFESTS, _offsite_patches(
            store.env(), store.ca_bundle.read_text(), recipient))
        kubectl("apply", "-k", str(offsite))
    with report.phase("kubectl create job --from=cronjob (off-site): backup, upload"):
        kubectl("-n", NAMESPACE, "create", "job", f"--from=cronjob/{CRONJOB}", "manual-1")
        first = _finished_pod(api, "manual-1")
    _check_succeeded(first, "manual-1")
    with report.phase("the schedule fires a Job (every minute)"):
        _patch_cronjob(kubectl, {"spec": {"schedule": EVERY_MINUTE}})
        scheduled = _wait_scheduled_job(api, SCHEDULE_TIMEOUT)
        _patch_cronjob(kubectl, {"spec": {"suspend": True}})
        second = _finished_pod(api, scheduled)
    _check_succeeded(second, scheduled)
    with report.phase("both sets verified on the master and on the store (decrypted)"):
        local = [s for s in backup_list.run(ctx, HOST_BACKUPS).sets if s.verified]
        checked = verify.run(ctx, HOST_BACKUPS)
        stored = offsite_verify.run(ctx, offsite_verify.RemoteVerifyRequest(
            STORE_URL, identity))
    names = {_set_name(first), _set_name(second)}
    check(names <= {s.name for s in local},
          f"the Jobs' sets {sorted(map(str, names))} are not all verified on the host: "
          f"{[s.name for s in local]}")
    check(all(not v.problems for v in checked), f"host sets failed verify: {checked}")
    check(len(stored.verdicts) >= 2 and all(v.decrypted and not v.problems
                                            for v in stored.verdicts),
          f"the store's sets did not verify: {stored.verdicts}")
    with report.phase("etcd stopped on master-0: the next Job fails, backups untouched"):
        before = _inventory(sandbox.root(0) / HOST_BACKUPS.lstrip("/")), _stored(ctx)
        manifest = sandbox.root(0) / "etc/kubernetes/manifests/etcd-member.yaml"
        parked = sandbox.dir / "etcd-member.yaml.stopped"
        shutil.move(manifest, parked)
        try:
            wait_until(lambda: _etcd_stopped(sandbox), timeout=30,
                       what="master-0's etcd to stop",
                       next_step=f"read {sandbox.master_dir(0)}/agent.log")
            kubectl("-n", NAMESPACE, "create", "job", f"--from=cronjob/{CRONJOB}", "etcd-down")
            failed = _finished_pod(api, "etcd-down")
        finally:
            shutil.move(parked, manifest)
        after = _inventory(sandbox.root(0) / HOST_BACKUPS.lstrip("/")), _stored(ctx)
        sandbox.wait_healthy([0])
    code = _exit_code(failed)
    check(code == EtcdUnavailable.exit_code,
          f"with etcd stopped the Job's container exited {code}, not "
          f"{EtcdUnavailable.exit_code} (EtcdUnavailable)")
    check(before == after, "backups changed while etcd was down: "
          f"{before} -> {after}")
    with report.phase("PVC variant: scheduled Job Pending (claim unbound), Forbid holds"):
        kubectl("-n", NAMESPACE, "delete", "cronjob", CRONJOB)
        pvc = _overlay(sandbox.dir / "cronjob-pvc", MANIFESTS / "pvc", [
            {"apiVersion": "batch/v1beta1", "kind": "CronJob", "metadata": {"name": CRONJOB},
             "spec": {"schedule": EVERY_MINUTE}}])
        kubectl("apply", "-k", str(pvc))
        pending = _wait_scheduled_job(api, SCHEDULE_TIMEOUT)
        # A whole schedule period and the controller's sync: Forbid must start no second Job.
        time.sleep(70)
        uid = json.loads(kubectl("-n", NAMESPACE, "get", "cronjob", CRONJOB, "-o",
                                 "json"))["metadata"]["uid"]
        jobs_while_pending = _owned_jobs(api, uid)
        # The volume on master-0's disk, where the drill's verify (host paths) reads it.
        volume = sandbox.root(0) / PV_DIR.lstrip("/")
        volume.mkdir(parents=True)
        api.create(_persistent_volume(volume))
        _patch_cronjob(kubectl, {"spec": {"suspend": True}})
        third = _finished_pod(api, pending)
    check(jobs_while_pending == [pending],
          f"concurrencyPolicy Forbid: jobs while one was Pending: {jobs_while_pending}")
    _check_succeeded(third, pending)
    with report.phase("the PVC's set verified"):
        on_claim = verify.run(ctx, PV_DIR)
    check(len(on_claim) == 1 and not on_claim[0].problems,
          f"the PVC holds {len(on_claim)} verified set(s): {on_claim}")
    report.facts += [
        f"pods ran on {NODE_NAME} (kubelet v1.20, containerd, runc) from {TOOLBOX_IMAGE}: "
        "read-only root, all capabilities dropped, hostPath volumes, host network",
        f"Job manual-1 (kubectl create job --from) and {scheduled} (the schedule): "
        f"sets {sorted(map(str, names))} verified on the host and, decrypted, on {STORE_URL}",
        "each pod's termination message is the JSON summary (exit_code 0)",
        f"etcd stopped: Job etcd-down failed with exit {code} (EtcdUnavailable); host sets "
        "and stored sets unchanged",
        f"PVC variant: {pending} Pending on its unbound claim across a schedule period, no "
        "second Job (Forbid); once a volume bound it made a verified set on the claim",
    ]


def _overlay(directory: Path, variant: Path, patches: list[dict[str, Any]]) -> Path:
    """What an operator writes: a kustomization on the variant naming the image and the
    edits its comments ask for (strategic-merge patches)."""
    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for i, patch in enumerate(patches):
        name = f"patch-{i}.yaml"
        (directory / name).write_text(yaml.safe_dump(patch))
        names.append(name)
    image, tag = TOOLBOX_IMAGE.rsplit(":", 1)
    (directory / "kustomization.yaml").write_text(yaml.safe_dump({
        "bases": [os.path.relpath(variant, directory)],
        "images": [{"name": image, "newTag": tag}],
        "patchesStrategicMerge": names}))
    return directory


def _offsite_patches(store_env: dict[str, str], ca_pem: str, recipient: str
                     ) -> list[dict[str, Any]]:
    secret = {k: v for k, v in store_env.items() if k not in ("AWS_CA_BUNDLE",
                                                              "AWS_DEFAULT_REGION")}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ocp-recovery-offsite"},
         "data": {"url": STORE_URL, "recipients": recipient + "\n",
                  "AWS_CA_BUNDLE": "/etc/ocp-recovery/ca/ca-bundle.pem",
                  "ca-bundle.pem": ca_pem}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ocp-recovery-s3"},
         "stringData": secret},
    ]


def _crd(group: str, kind: str, plural: str, scope: str) -> dict[str, Any]:
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": scope,
                     "names": {"kind": kind, "plural": plural, "singular": kind.lower(),
                               "listKind": f"{kind}List"},
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                         "openAPIV3Schema": {"type": "object",
                                             "x-kubernetes-preserve-unknown-fields": True}}}]}}


def _served(kubectl: Kubectl, plural: str) -> Callable[[], bool]:
    def listed() -> bool:
        try:
            kubectl("get", plural, "--all-namespaces")
        except PreconditionFailed:
            return False
        return True

    return listed


def _patch_cronjob(kubectl: Kubectl, patch: dict[str, Any]) -> None:
    kubectl("-n", NAMESPACE, "patch", "cronjob", CRONJOB, "--type=merge", "-p",
            json.dumps(patch))


def _owned_jobs(api: KubeClient, cronjob_uid: str | None = None) -> list[str]:
    """The Jobs the cronjob controller made (kubectl's --from Jobs carry an annotation);
    `cronjob_uid`: only that CronJob's (a deleted one's Jobs linger until collected)."""
    uid = cronjob_uid
    return sorted(j["metadata"]["name"] for j in api.list("Job", NAMESPACE)
                  if any(o.get("kind") == "CronJob" and (uid is None or o.get("uid") == uid)
                         for o in j["metadata"].get("ownerReferences") or [])
                  and "cronjob.kubernetes.io/instantiate" not in
                  (j["metadata"].get("annotations") or {}))


def _wait_scheduled_job(api: KubeClient, timeout: float) -> str:
    known = set(_owned_jobs(api))
    found: list[str] = []

    def fired() -> bool:
        found[:] = [j for j in _owned_jobs(api) if j not in known]
        return bool(found)

    wait_until(fired, timeout=timeout, what=f"the CronJob's schedule ({EVERY_MINUTE}) to "
               "create a Job", next_step="read the kube-controller-manager log")
    return found[0]


def _finished_pod(api: KubeClient, job: str) -> dict[str, Any]:
    """The Job's pod once its container has terminated (backoffLimit 0: one pod)."""
    pods: list[dict[str, Any]] = []

    def terminated() -> bool:
        pods[:] = [p for p in api.list("Pod", NAMESPACE)
                   if p["metadata"].get("labels", {}).get("job-name") == job]
        return bool(pods) and "terminated" in _state(pods[0])

    wait_until(terminated, timeout=JOB_TIMEOUT, what=f"Job {job}'s pod to finish",
               next_step=f"kubectl -n {NAMESPACE} describe job {job}",
               progress=lambda: pods[0]["status"].get("phase", "?") if pods else "no pod")
    return pods[0]


def _state(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = pod.get("status", {}).get("containerStatuses") or [{}]
    return statuses[0].get("state") or {}


def _exit_code(pod: dict[str, Any]) -> int | None:
    code = _state(pod).get("terminated", {}).get("exitCode")
    return int(code) if code is not None else None


def _summary(pod: dict[str, Any]) -> dict[str, Any]:
    """The termination message: the run's JSON summary (OCP_RECOVERY_TERMINATION_LOG)."""
    try:
        doc = json.loads(_state(pod).get("terminated", {}).get("message") or "")
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _set_name(pod: dict[str, Any]) -> str:
    """The set a backup Job made: its snapshot's timestamp, from the termination message."""
    return Path(str(_summary(pod).get("snapshot", "?"))).stem.removeprefix("snapshot_")


def _etcd_stopped(sandbox: Sandbox) -> bool:
    try:
        with sandbox.client(0, timeout=1.0):
            return False
    except EtcdUnavailable:
        return True


def _check_succeeded(pod: dict[str, Any], job: str) -> None:
    summary = _summary(pod)
    check(pod["spec"].get("nodeName") == NODE_NAME, f"Job {job}'s pod ran on "
          f"{pod['spec'].get('nodeName')!r}, not {NODE_NAME}")
    check(_exit_code(pod) == 0 and summary.get("exit_code") == 0,
          f"Job {job}: exit {_exit_code(pod)}, termination message {summary or 'absent'}")


def _inventory(directory: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


def _stored(ctx: Context) -> list[tuple[str, int | None]]:
    return [(s.name, s.snapshot_bytes) for s in backup_list.run(ctx, STORE_URL).sets]


def _persistent_volume(path: Path) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": "sandbox-backups"},
            "spec": {"capacity": {"storage": "20Gi"}, "accessModes": ["ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain",
                     "hostPath": {"path": str(path), "type": "Directory"}}}


