"""The backup CronJob on a real Kubernetes node (`sandbox up --kubernetes`): the drill, and
least privilege: each grant the SCC makes (host network, uid 0, each hostPath) is needed,
shown by a Job without it failing, and the service account may do nothing but use the SCC."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import missing, require_kube_apiserver
from toolbox.errors import EtcdUnavailable, PreconditionFailed
from toolbox.kube.client import KubeClient
from toolbox.sandbox import scheduled_backup as drill
from toolbox.sandbox.binaries import require_container_runtime, require_node_components
from toolbox.sandbox.cluster import Sandbox

# The drill waits for two schedule periods and runs five Jobs: about 5 minutes here.
pytestmark = pytest.mark.timeout(1200)
SA = f"system:serviceaccount:{drill.NAMESPACE}:ocp-recovery-backup"


def _require_node_parts() -> None:
    require_kube_apiserver()
    try:
        require_node_components()
        require_container_runtime()
    except PreconditionFailed as exc:
        missing(f"the sandbox node's parts: {exc.what}")


def test_the_scheduled_backup_drill_runs_the_cronjob_on_a_real_node(  # type: ignore[no-untyped-def]
        run_cli, image: str, tmp_path: Path) -> None:
    _require_node_parts()
    out = run_cli(["drill", "scheduled-backup", "--image", image, "--dir",
                   str(tmp_path)]).stdout
    assert "drill scheduled-backup (etcd 3.5)" in out
    assert f"failed with exit {EtcdUnavailable.exit_code} (EtcdUnavailable)" in out
    assert "no second Job (Forbid)" in out
    assert "verified on the host and, decrypted, on s3://backups/cluster-a" in out
    assert not (tmp_path / "sandbox").exists(), "a passing drill tears its sandbox down"
    assert not Path("/etc/kubernetes").exists() or any(Path("/etc/kubernetes").iterdir()), \
        "the node's mount point is left behind"


@pytest.fixture(scope="module")
def node(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One master that is a node, with the base CronJob (backups on the master) applied."""
    _require_node_parts()
    sandbox = Sandbox.up(tmp_path_factory.mktemp("node"), masters=1,
                         kube_apiserver=require_kube_apiserver(), kubernetes_image=image)
    try:
        kubectl = drill.Kubectl(sandbox)
        kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(
            [drill._crd(*kind) for kind in drill.OPENSHIFT_KINDS]))
        for _, _, plural, _ in drill.OPENSHIFT_KINDS:
            drill.wait_until(drill._served(kubectl, plural), timeout=60, what=plural,
                             next_step="kubectl get crd")
        kubectl("apply", "-k", str(drill._overlay(sandbox.dir / "base", drill.MANIFESTS /
                                                  "base", [])))
        yield sandbox
    finally:
        sandbox.down()


def _template(sandbox: Sandbox) -> dict[str, Any]:
    cronjob = json.loads(drill.Kubectl(sandbox)("-n", drill.NAMESPACE, "get", "cronjob",
                                                drill.CRONJOB, "-o", "json"))
    return cronjob["spec"]["jobTemplate"]["spec"]


def _run_job(sandbox: Sandbox, name: str, change: Any) -> dict[str, Any]:
    spec = copy.deepcopy(_template(sandbox))
    change(spec["template"]["spec"])
    api = KubeClient.from_file(sandbox.admin_kubeconfig, timeout=15)
    api.create({"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": name, "namespace": drill.NAMESPACE}, "spec": spec})
    return drill._finished_pod(api, name)


def _backups(sandbox: Sandbox) -> list[str]:
    directory = sandbox.root(0) / drill.HOST_BACKUPS.lstrip("/")
    return sorted(p.name for p in directory.glob("snapshot_*.db")) if directory.is_dir() else []


def _without_volume(name: str) -> Any:
    def change(pod: dict[str, Any]) -> None:
        pod["volumes"] = [v for v in pod["volumes"] if v["name"] != name]
        for container in pod["containers"]:
            container["volumeMounts"] = [m for m in container["volumeMounts"]
                                         if m["name"] != name]
    return change


def _container(change: Any) -> Any:
    def apply(pod: dict[str, Any]) -> None:
        change(pod["containers"][0])
    return apply


def test_with_every_grant_the_job_backs_up(node: Sandbox) -> None:
    before = _backups(node)
    pod = _run_job(node, "granted", lambda pod: None)
    assert drill._exit_code(pod) == 0, drill._summary(pod)
    assert drill._summary(pod)["exit_code"] == 0
    assert len(_backups(node)) == len(before) + 1
    container = pod["spec"]["containers"][0]
    assert not any("serviceaccount" in m["mountPath"] for m in container["volumeMounts"]), \
        "the pod mounts an API token it does not need"


# allowHostNetwork is not among them: the sandbox node's network is loopback-only CNI, which
# gives a pod no address, so a pod off the host network never starts here.
@pytest.mark.parametrize(("grant", "change", "exit_code"), [
    # runAsUser uid 0: the etcd client key and the backups are root's, mode 0600.
    ("uid-0", _container(lambda c: c["securityContext"].update(runAsUser=1000)), 3),
    # allowHostDirVolumePlugin, /etc/kubernetes: the client certificate, the revisions;
    # without them this is not a master (exit 4).
    ("hostpath-kubernetes", _without_volume("kubernetes"), 4),
    # allowHostDirVolumePlugin, /var/lib/ocp-recovery: the backups' directory is then on
    # the read-only root (exit 3, not writable).
    ("hostpath-state", _without_volume("state"), 3),
])
def test_without_each_grant_the_job_fails_and_writes_no_backup(
        node: Sandbox, grant: str, change: Any, exit_code: int) -> None:
    before = _backups(node)
    pod = _run_job(node, f"without-{grant}", change)
    summary = drill._summary(pod)
    assert drill._exit_code(pod) == exit_code, summary
    assert summary.get("exit_code") == exit_code and summary.get("next"), summary
    assert _backups(node) == before


def test_the_service_account_may_only_use_its_scc(node: Sandbox) -> None:
    kubectl = drill.Kubectl(node)
    rules = kubectl("auth", "can-i", "--list", f"--as={SA}", "-n", drill.NAMESPACE)
    granted = [line.split()[0] for line in rules.splitlines()[1:] if line.strip()]
    # Beyond what every authenticated user may (discovery, self reviews): the SCC only.
    extra = [r for r in granted if not r.startswith(("selfsubject", "[/"))]
    assert extra == ["securitycontextconstraints.security.openshift.io"], rules
    scc_rule = next(line for line in rules.splitlines()
                    if line.startswith("securitycontextconstraints"))
    assert "[ocp-recovery-backup]" in scc_rule and "[use]" in scc_rule, scc_rule
    for verb, resource in (("get", "secrets"), ("list", "pods"), ("create", "jobs")):
        denied = kubectl("auth", "can-i", verb, resource, f"--as={SA}", "-n",
                         drill.NAMESPACE, check=False)
        assert denied.strip() == "no", (verb, resource)
