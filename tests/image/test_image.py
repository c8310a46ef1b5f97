"""The image's entry points against a sandbox master whose host root is mounted at /host,
run with testcontainers; and the CronJob's exact container, read from the rendered
kustomize manifests and started as the kubelet would: the PVC variant, and the off-site one
against a real object store (Ceph's RADOS Gateway over HTTPS)."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_ceph, require_etcd
from tests.image.conftest import (
    OFFSITE_VARIANT,
    PVC_VARIANT,
    ca_bundle_path_told,
    only,
    render,
    run_container,
)
from toolbox import cli
from toolbox.host.backups import timestamp_time
from toolbox.host.paths import resolve_under
from toolbox.sandbox.cluster import Sandbox
from toolbox.sandbox.objectstore import ObjectStore
from toolbox.store.encryption import new_identity

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


# ---- the CronJob's container, as the kubelet would start it ------------------------------
def _expand(text: str, env: dict[str, str]) -> str:
    """The kubelet's $(VAR) expansion: a variable not defined stays as written."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), text)


def _kubelet_env(container: dict[str, Any], configmaps: dict[str, dict[str, str]],
                 secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """envFrom, then env (which wins); a reference to an absent optional key sets nothing
    (an absent required one would keep the pod from starting)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(secrets[source["secretRef"]["name"]] if "secretRef" in source
                   else configmaps[source["configMapRef"]["name"]])
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = _expand(variable["value"], env)
            continue
        [(kind, ref)] = variable["valueFrom"].items()
        data = (secrets if kind == "secretKeyRef" else configmaps)[ref["name"]]
        if ref["key"] in data:
            env[variable["name"]] = data[ref["key"]]
        else:
            assert ref.get("optional"), f"{ref['name']} has no key {ref['key']}"
    return env


def _configmap_volume(source: dict[str, Any], configmaps: dict[str, dict[str, str]],
                      target: Path) -> Path:
    """The kubelet's atomic writer: the keys' files in a timestamped directory behind the
    `..data` symlink, each name a symlink through it."""
    data = configmaps[source["name"]]
    payload = target / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.000000001"
    payload.mkdir(parents=True)
    for item in source.get("items") or [{"key": key, "path": key} for key in data]:
        if item["key"] not in data:
            assert source.get("optional"), f"{source['name']} has no key {item['key']}"
            continue
        (payload / item["path"]).write_text(data[item["key"]])
        (payload / item["path"]).chmod(0o644)
        (target / item["path"]).symlink_to(f"..data/{item['path']}")
    (target / "..data").symlink_to(payload.name)
    return target


def _kubelet_mounts(pod: dict[str, Any], container: dict[str, Any], *, host_root: Path,
                    scratch: Path, claims: dict[str, Path] | None = None,
                    configmaps: dict[str, dict[str, str]] | None = None
                    ) -> dict[Path, tuple[str, str]]:
    """Each volume's source: a hostPath under the master's root, a claim from `claims`, an
    emptyDir and each ConfigMap in `scratch`; keyed as run_container takes them."""
    sources: dict[str, Path] = {}
    for volume in pod["volumes"]:
        name = volume["name"]
        if "hostPath" in volume:
            sources[name] = host_root / volume["hostPath"]["path"].lstrip("/")
            if volume["hostPath"]["type"] == "DirectoryOrCreate":
                sources[name].mkdir(parents=True, exist_ok=True)
        elif "persistentVolumeClaim" in volume:
            sources[name] = (claims or {})[volume["persistentVolumeClaim"]["claimName"]]
        elif "emptyDir" in volume:
            sources[name] = scratch / name
            sources[name].mkdir(parents=True)
        else:
            sources[name] = _configmap_volume(volume["configMap"], configmaps or {},
                                              scratch / name)
    return {sources[m["name"]]: (m["mountPath"], "ro" if m.get("readOnly") else "rw")
            for m in container["volumeMounts"]}


def _run_cronjob_container(image: str, master: Sandbox, pod: dict[str, Any],
                           env: dict[str, str], volumes: dict[Path, tuple[str, str]]
                           ) -> tuple[int, str, str]:
    [container] = pod["containers"]
    env = {**env, "ETCDCTL_ENDPOINTS": master.spec(0).client_url}  # the sandbox's 127.0.0.1
    security = container["securityContext"]
    return run_container(
        image, [_expand(word, env) for word in container["command"] + container["args"]],
        volumes=volumes, env=env, entrypoint=[], user=str(security["runAsUser"]),
        read_only=security["readOnlyRootFilesystem"],
        cap_drop=security["capabilities"]["drop"])


def _option(args: list[str], name: str) -> int:
    return int(args[args.index(name) + 1])


def _summary(out: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        [line for line in out.splitlines() if '"backup.summary"' in line][-1])
    return found


def test_the_cronjob_container_backs_up_to_the_pvc_and_prunes(
        image: str, engine_socket: str, master: Sandbox, run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    docs = render(PVC_VARIANT)
    pod = only(docs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    keep = _option(container["args"], "--keep")
    root = master.root(0)
    pvc = root / "var/home/core/pvc"  # stands in for the PersistentVolumeClaim
    for _ in range(keep):  # `keep` older verified backups, made on the master itself
        run_cli(["backup", "/home/core/pvc"], env=master.env_vars(0, {}))
    oldest = min(p.name for p in pvc.glob("snapshot_*.db"))

    volumes = _kubelet_mounts(pod, container, host_root=root, scratch=tmp_path,
                              claims={only(docs, "PersistentVolumeClaim")["metadata"]["name"]: pvc})
    code, out, err = _run_cronjob_container(image, master, pod,
                                            _kubelet_env(container, {}, {}), volumes)
    assert code == 0, err
    assert _summary(out)["snapshot"].startswith("/backups/")
    snapshots = sorted(p.name for p in pvc.glob("snapshot_*.db"))
    assert len(snapshots) == keep and oldest not in snapshots
    assert cli.run(["--host-root", str(root), "--host-exec", "direct", "snapshot", "verify",
                    "/home/core/pvc"]) == 0


# ---- the off-site variant against a real object store ------------------------------------
OFFSITE_STORE_IP = "127.0.0.7"  # not the session store's (.8) nor a sandbox's (.9)
BUCKET, PREFIX = "etcd-backups", "cluster-a"
IDENTITY = "/home/core/offsite-identity.txt"  # kept off the cluster in real life


@pytest.fixture(scope="module")
def offsite_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    require_ceph()
    store = ObjectStore.up(tmp_path_factory.mktemp("offsite-store"), OFFSITE_STORE_IP)
    store.create_bucket(BUCKET)
    yield store
    store.stop()


@dataclass(frozen=True)
class OffsiteCronJob:
    pod: dict[str, Any]
    env: dict[str, str]                            # as the kubelet gives it
    configmaps: dict[str, dict[str, str]]          # as the operator filled them in
    url: str
    directory: str                                 # the host path of the local backups
    recipient: str


@pytest.fixture(scope="module")
def offsite(master: Sandbox, offsite_store: ObjectStore) -> OffsiteCronJob:
    """The rendered default variant, its ConfigMap and Secret filled in as the operator edits
    them (offsite-configmap.yaml, s3-secret.yaml) for this store, and an identity to check."""
    docs = render(OFFSITE_VARIANT)
    pod = only(docs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    example_configmap, example_secret = only(docs, "ConfigMap"), only(docs, "Secret")
    identity, recipient = new_identity()
    resolve_under(master.root(0), IDENTITY).write_text(identity)
    url = f"s3://{BUCKET}/{PREFIX}"
    configmap = {"url": url, "recipients": f"# the operators' key\n{recipient}\n",
                 "AWS_CA_BUNDLE": ca_bundle_path_told(),
                 "ca-bundle.pem": offsite_store.ca_bundle.read_text()}
    secret = {"AWS_ACCESS_KEY_ID": offsite_store.access_key,
              "AWS_SECRET_ACCESS_KEY": offsite_store.secret_key,
              "AWS_ENDPOINT_URL": offsite_store.endpoint_https,
              "AWS_REGION": offsite_store.region}
    assert set(example_configmap["data"]) <= set(configmap)
    assert set(example_secret["stringData"]) <= set(secret)
    configmaps = {example_configmap["metadata"]["name"]: configmap}
    env = _kubelet_env(container, configmaps, {example_secret["metadata"]["name"]: secret})
    return OffsiteCronJob(pod, env, configmaps, url, container["args"][1], recipient)


def _local_sets(run_cli, master: Sandbox, directory: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    listed = run_cli(["backup", "ls", directory, "--json"], env=master.env_vars(0, {}))
    sets: list[dict[str, Any]] = listed.json_lines()[-1]["sets"]
    return sets


def _wait_for_the_clock_to_pass(sets: list[dict[str, Any]]) -> None:
    """Sets made in a burst are named a second apart, ahead of the clock; the CronJob's next
    run, hours later in real life, must come after the newest of them."""
    if sets:
        time.sleep(max(0.0, timestamp_time(sets[-1]["name"]).timestamp() + 1 - time.time()))


def _stored_sets(run_cli, store: ObjectStore, url: str) -> list[str]:  # type: ignore[no-untyped-def]
    listed = run_cli(["backup", "ls", url, "--json"], env=store.env())
    return [s["name"] for s in listed.json_lines()[-1]["sets"]]


def test_the_offsite_cronjob_container_backs_up_on_the_master_and_to_the_store_and_prunes_both(
        image: str, engine_socket: str, master: Sandbox, offsite_store: ObjectStore,
        offsite: OffsiteCronJob, run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    [container] = offsite.pod["containers"]
    keep, keep_remote = (_option(container["args"], o) for o in ("--keep", "--keep-remote"))
    root = master.root(0)
    on_master = master.env_vars(0, {})
    # `keep_remote` older sets, on the store and on the master, so both sides must prune.
    for _ in range(keep_remote):
        run_cli(["backup", offsite.directory], env=on_master)
    run_cli(["backup", "push", offsite.directory, offsite.url, "--all", "--recipient",
             offsite.recipient, "--no-progress"], env={**on_master, **offsite_store.env()})
    before = _stored_sets(run_cli, offsite_store, offsite.url)
    assert len(before) == keep_remote
    _wait_for_the_clock_to_pass(_local_sets(run_cli, master, offsite.directory))

    volumes = _kubelet_mounts(offsite.pod, container, host_root=root, scratch=tmp_path,
                              configmaps=offsite.configmaps)
    code, out, err = _run_cronjob_container(image, master, offsite.pod, offsite.env, volumes)
    assert code == 0, (out, err)
    summary = _summary(out)
    new = Path(summary["snapshot"]).stem.removeprefix("snapshot_")
    assert summary["snapshot"].startswith(offsite.directory + "/")
    assert summary["uploaded"] == f"{offsite.url}/{new}"
    assert summary["remote_pruned"] == [before[0]]

    # On the master: the `keep` newest, the new one uploaded; readable without the API.
    local = _local_sets(run_cli, master, offsite.directory)
    assert [s["name"] for s in local] == [*before[-(keep - 1):], new]
    assert local[-1]["verified"] and local[-1]["offsite"]
    # On the store: complete (its manifest, the commit marker, is there), the oldest pruned,
    # and it decrypts with the operators' identity to a snapshot that verifies.
    assert _stored_sets(run_cli, offsite_store, offsite.url) == [*before[1:], new]
    keys = {o["Key"] for o in offsite_store.client().list_objects_v2(
        Bucket=BUCKET, Prefix=f"{PREFIX}/")["Contents"]}
    assert f"{PREFIX}/{new}/backup_{new}.json" in keys
    assert not any(k.startswith(f"{PREFIX}/{before[0]}/") for k in keys)
    run_cli(["backup", "verify", f"{offsite.url}/{new}", "--identity", IDENTITY],
            env={**on_master, **offsite_store.env()})


def test_with_the_store_down_the_offsite_cronjob_keeps_a_verified_local_backup_and_fails(
        image: str, engine_socket: str, master: Sandbox, offsite_store: ObjectStore,
        offsite: OffsiteCronJob, run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    [container] = offsite.pod["containers"]
    volumes = _kubelet_mounts(offsite.pod, container, host_root=master.root(0),
                              scratch=tmp_path, configmaps=offsite.configmaps)
    before = _local_sets(run_cli, master, offsite.directory)
    _wait_for_the_clock_to_pass(before)
    offsite_store.kill_radosgw()
    try:
        code, out, err = _run_cronjob_container(image, master, offsite.pod, offsite.env,
                                                volumes)
    finally:
        offsite_store.start_radosgw()
    assert code == 16, (out, err)  # ObjectStoreError: the Job shows Failed
    newest = _local_sets(run_cli, master, offsite.directory)[-1]
    assert newest["name"] not in {s["name"] for s in before}
    assert newest["verified"] and not newest["offsite"]
    snapshot = f"{offsite.directory}/snapshot_{newest['name']}.db"
    run_cli(["snapshot", "verify", snapshot], env=master.env_vars(0, {}))
    # The error says so, and how to upload it once the store is back; nothing was sent.
    assert "is not off-site" in out + err
    assert f"ocp-recovery backup push {snapshot} {offsite.url}" in out + err
    assert not offsite_store.client().list_objects_v2(
        Bucket=BUCKET, Prefix=f"{PREFIX}/{newest['name']}/").get("Contents")


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
