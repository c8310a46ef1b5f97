"""The image's entry points against a sandbox master whose host root is mounted at /host,
run with testcontainers; and the CronJob's exact container, read from the rendered
kustomize manifests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest
import yaml

from tests.conftest import missing, require_etcd
from tests.image.conftest import REPO, run_container
from toolbox import cli
from toolbox.sandbox.cluster import Sandbox

pytestmark = pytest.mark.timeout(1500)


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    require_etcd("3.5")
    sandbox = Sandbox.up(tmp_path_factory.mktemp("image-sandbox"), masters=1, etcd="3.5")
    yield sandbox
    sandbox.down()


def _on_master(master: Sandbox) -> dict[str, str]:
    """What the operator sets on a master: etcd here; host commands through the sandbox's
    shims (they play systemd and CRI-O, which cannot exist here)."""
    return {"ETCDCTL_ENDPOINTS": master.spec(0).client_url, "OCP_RECOVERY_HOST_EXEC": "direct"}


def test_legacy_backup_then_verify_inside_the_container(image: str, engine_socket: str,
                                                        master: Sandbox) -> None:
    root = master.root(0)
    code, _, err = run_container(
        image, ["etcd-snapshot-backup.sh", "/home/core/backup"],
        volumes={root: ("/host", "rw")}, env=_on_master(master))
    assert code == 0, err
    backup_dir = root / "var/home/core/backup"
    [snapshot] = backup_dir.glob("snapshot_*.db")
    assert len(list(backup_dir.glob("static_kuberesources_*.tar.gz"))) == 1
    assert oct(backup_dir.stat().st_mode & 0o777) == "0o700"

    code, _, err = run_container(image, ["snapshot", "verify", "/host/home/core/backup"],
                                   volumes={root: ("/host", "ro")}, env=_on_master(master))
    assert code == 0, err
    corrupt = root / "var/home/core/corrupt"
    corrupt.mkdir()
    copy = corrupt / snapshot.name
    shutil.copy(snapshot, copy)
    with copy.open("r+b") as f:
        f.seek(copy.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    code, out, err = run_container(image, ["snapshot", "verify", f"/home/core/corrupt/{copy.name}"],
                                   volumes={root: ("/host", "ro")}, env=_on_master(master))
    assert code == 6, (code, out, err)
    assert "sha256" in err


def test_without_host_pid_host_commands_fall_back_to_chroot(image: str, engine_socket: str,
                                                            master: Sandbox) -> None:
    code, _, err = run_container(image, ["status"],
                                   volumes={master.root(0): ("/host", "ro")})
    assert code == 0, err
    assert "PID 1 is not the host's" in err and "chroot /host" in err


def _rendered_cronjob() -> dict:  # type: ignore[type-arg]
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        missing("kubectl (Debian's kubernetes-client; scripts/install.sh --test installs it)")
    done = subprocess.run([str(kubectl), "kustomize", str(REPO / "manifests/backup")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    docs = list(yaml.safe_load_all(done.stdout))
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ClusterRole", "CronJob", "Namespace", "PersistentVolumeClaim",
                     "RoleBinding", "SecurityContextConstraints", "ServiceAccount"]
    _deserialize_with_the_kubernetes_client(docs)
    [cronjob] = [d for d in docs if d["kind"] == "CronJob"]
    return cronjob


def _deserialize_with_the_kubernetes_client(docs: list[dict]) -> None:  # type: ignore[type-arg]
    from kubernetes.client import ApiClient

    api = ApiClient()
    models = {"Namespace": "V1Namespace", "ServiceAccount": "V1ServiceAccount",
              "ClusterRole": "V1ClusterRole", "RoleBinding": "V1RoleBinding",
              "PersistentVolumeClaim": "V1PersistentVolumeClaim",
              # batch/v1beta1 (what 4.3 serves) has the shape of V1CronJob.
              "CronJob": "V1CronJob"}
    for doc in docs:
        if doc["kind"] not in models:
            continue  # an OpenShift kind the upstream client has no model for
        model = api.deserialize(json.dumps(doc), models[doc["kind"]], "application/json")
        assert model.metadata.name == doc["metadata"]["name"]
        if doc["kind"] == "CronJob":
            pod = model.spec.job_template.spec.template.spec
            assert pod.host_network and pod.restart_policy == "Never"
            assert model.spec.concurrency_policy == "Forbid"
            assert model.spec.job_template.spec.active_deadline_seconds > 0


def test_the_cronjob_container_backs_up_to_the_pvc_and_prunes(
        image: str, engine_socket: str, master: Sandbox, run_cli) -> None:  # type: ignore[no-untyped-def]
    cronjob = _rendered_cronjob()
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    keep = int(container["args"][container["args"].index("--keep") + 1])
    root = master.root(0)
    pvc = root / "var/home/core/pvc"  # stands in for the PersistentVolumeClaim
    for _ in range(keep):  # `keep` older verified backups, made on the master itself
        run_cli(["backup", "/home/core/pvc"], env=master.env_vars(0, {}))
    oldest = min(p.name for p in pvc.glob("snapshot_*.db"))

    sources = {"kubernetes": root / "etc/kubernetes", "state": root / "var/lib/ocp-recovery",
               "backups": pvc, "tmp": master.dir / "pod-tmp"}
    sources["state"].mkdir(parents=True, exist_ok=True)
    sources["tmp"].mkdir(exist_ok=True)
    volumes = {sources[m["name"]]: (m["mountPath"], "ro" if m.get("readOnly") else "rw")
               for m in container["volumeMounts"]}
    env = {e["name"]: e["value"] for e in container["env"]}
    env["ETCDCTL_ENDPOINTS"] = master.spec(0).client_url  # the sandbox master's 127.0.0.1
    security = container["securityContext"]
    code, out, err = run_container(
        image, container["command"] + container["args"], volumes=volumes, env=env,
        entrypoint=[], user=str(security["runAsUser"]),
        read_only=security["readOnlyRootFilesystem"],
        cap_drop=security["capabilities"]["drop"])
    assert code == 0, err
    summary = json.loads([line for line in out.splitlines() if '"backup.summary"' in line][-1])
    assert summary["snapshot"].startswith("/backups/")
    snapshots = sorted(p.name for p in pvc.glob("snapshot_*.db"))
    assert len(snapshots) == keep and oldest not in snapshots
    assert cli.run(["--host-root", str(root), "--host-exec", "direct", "snapshot", "verify",
                    "/home/core/pvc"]) == 0


def test_every_module_of_the_toolbox_loads_from_the_image_bytecode(image: str,
                                                                    engine_socket: str) -> None:
    """Compiling the toolbox, gRPC and protobuf again at each start cost 0.2 s of every
    command; on a read-only root it would also be done again every time."""
    import_all = ("import importlib, pkgutil, toolbox\n"
                  "for m in pkgutil.walk_packages(toolbox.__path__, 'toolbox.'):\n"
                  "    if not m.name.startswith(('toolbox.sandbox', 'toolbox.__main__')):\n"
                  "        importlib.import_module(m.name)\n")
    code, _, err = run_container(image, ["python3", "-v", "-c", import_all], volumes={},
                                 read_only=True)
    assert code == 0, err[-3000:]
    loaded = [line for line in err.splitlines() if line.startswith("# code object from ")]
    compiled = [line for line in loaded if line.endswith(".py")]  # -v: no quotes, no .pyc
    assert compiled == []
    assert any("toolbox/procedures/__pycache__/restore" in line for line in loaded)
    assert any("grpc/__pycache__" in line for line in loaded)
