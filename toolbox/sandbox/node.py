"""The sandbox's Kubernetes node: master-0 as a real kubelet and containerd see it, for the
backup CronJob (`sandbox up --kubernetes`).

On a real master the kubelet and CRI-O are systemd services and a CronJob's hostPath volumes
are the host's /etc/kubernetes and /var/lib/ocp-recovery. Here the node runs in a private
mount namespace (`unshare --mount`) where master-0's host root is bind-mounted on those two
paths, so the manifests apply unchanged and the backup pod sees the same files the toolbox
sees on the master. The node shares the sandbox's network namespace (hostNetwork pods reach
etcd at 127.0.0.1:2379, as on a master), registers as master-0 with the master taint and
label, and runs no static pods (the node agent runs those). The runtime is containerd with
runc; its images are imported (nothing can be pulled): the toolbox image saved by podman and
a pause image made here from the pause binary built with Kubernetes.

`python -m toolbox.sandbox.node DIR` is the node's supervisor inside that namespace: mounts,
containerd, image import, kubelet; when either dies or on SIGTERM it stops both.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from toolbox.errors import PreconditionFailed
from toolbox.kube import config as kubeconfig
from toolbox.pki import certs, rotation
from toolbox.sandbox.cluster import _alive, _package_parent, _read_pid, _wait_gone
from toolbox.sandbox.layout import MasterSpec, _write
from toolbox.waiting import wait_until

NODE_NAME = "master-0"
KUBELET_PORT = 10250
KUBELET_HEALTHZ_PORT = 10248
# The tag the drill's overlay names: not `latest`, whose pull policy is Always.
TOOLBOX_IMAGE = "localhost/ocp-recovery:sandbox"
PAUSE_IMAGE = "localhost/ocp-recovery-pause:v1.20"
# The CronJob's hostPath volumes: on the node they are master-0's host root's.
HOST_PATHS = ("/etc/kubernetes", "/var/lib/ocp-recovery")
# Where the kubelet 1.20 writes pod logs, whatever its flags say.
POD_LOGS = "/var/log/pods"
# containerd start, two image imports (the toolbox's is ~500 MB, copied whole by the native
# snapshotter), the kubelet's first status: 30 s here, over 90 s on a loaded machine.
READY_TIMEOUT = 240.0
STOP_TIMEOUT = 20.0


@dataclass(frozen=True)
class NodeBinaries:
    kubelet: str
    containerd: str
    ctr: str
    pause: str


@dataclass(frozen=True)
class NodeConfig:
    """What the supervisor needs, saved as node.json in the node's directory."""
    root: str                 # master-0's host root
    binaries: NodeBinaries
    toolbox_image: str        # OCI archive of the toolbox image
    toolbox_image_name: str   # its name in that archive
    cgroup_root: str          # the kubelet's --cgroup-root, unique to this sandbox
    socket_dir: str           # containerd's sockets and the kubelet's root dir (which holds
    #                           sockets too): a unix socket path has 104 bytes at most
    created_mountpoints: tuple[str, ...]  # host dirs made for the bind mounts (removed at down)
    snapshotter: str          # containerd's: overlayfs, or native where that cannot work

    @classmethod
    def load(cls, node_dir: Path) -> NodeConfig:
        raw = json.loads((node_dir / "node.json").read_text())
        return cls(raw["root"], NodeBinaries(**raw["binaries"]), raw["toolbox_image"],
                   raw["toolbox_image_name"], raw["cgroup_root"], raw["socket_dir"],
                   tuple(raw["created_mountpoints"]), raw["snapshotter"])


def lay_out(node_dir: Path, *, root: Path, binaries: NodeBinaries, toolbox_image: Path,
            toolbox_image_name: str, node_signer: certs.Issued, serving_cas: bytes,
            api_url: str) -> NodeConfig:
    """The node's files: containerd's config and CNI network, the kubelet's config and its
    kubeconfig (system:node:master-0 in system:nodes, signed by the csr-signer, as a node's
    approved CSR would be), the pause image archive, node.json."""
    node_dir.mkdir(parents=True, exist_ok=True)
    cgroup_root = "ocpr-sandbox-" + hashlib.sha256(str(node_dir).encode()).hexdigest()[:8]
    containerd_dir = node_dir / "containerd"
    (containerd_dir / "cni").mkdir(parents=True, exist_ok=True)
    socket_dir = Path("/run") / cgroup_root
    # An overlay's upper dir cannot itself be on overlayfs (the node dir inside a container:
    # every pod failed with "failed to mount rootfs component ... invalid argument").
    snapshotter = "native" if _file_system_type(node_dir) == "overlay" else "overlayfs"
    _write(containerd_dir / "config.toml", _containerd_config(containerd_dir, socket_dir,
                                                              snapshotter).encode())
    # hostNetwork pods need no network; the CNI config only makes the runtime report ready.
    _write(containerd_dir / "cni/10-loopback.conflist", json.dumps(
        {"cniVersion": "0.4.0", "name": "sandbox", "plugins": [{"type": "loopback"}]}).encode())
    client = certs.issue(node_signer, common_name=f"system:node:{NODE_NAME}",
                         organizations=["system:nodes"], server=False, days=30)
    _write(node_dir / "kubelet/kubeconfig", kubeconfig.render(
        cluster="sandbox", server=api_url, user=NODE_NAME, context=NODE_NAME,
        ca_pem=serving_cas, client_cert_pem=client.cert_pem(),
        client_key_pem=client.key_pem()), 0o600)
    _write(node_dir / "kubelet/config.yaml", yaml.safe_dump(
        _kubelet_config(cgroup_root), sort_keys=False).encode())
    _write(node_dir / "pause.tar", _pause_archive(Path(binaries.pause)))
    created = tuple(p for p in (*HOST_PATHS, POD_LOGS) if not Path(p).exists())
    config = NodeConfig(str(root), binaries, str(toolbox_image), toolbox_image_name,
                        cgroup_root, str(socket_dir), created, snapshotter)
    _write(node_dir / "node.json", json.dumps(asdict(config)).encode())
    return config


def start(node_dir: Path) -> int:
    """Start the supervisor in a private mount namespace; its pid (a process group)."""
    log = open(node_dir / "node.log", "ab")  # noqa: SIM115
    with log:
        proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private",
             sys.executable, "-m", "toolbox.sandbox.node", str(node_dir)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env={**os.environ, "PYTHONPATH": _package_parent()})
    (node_dir / "node.pid").write_text(str(proc.pid))
    return proc.pid


def stop(node_dir: Path) -> None:
    """Stop the node and everything it ran: the supervisor (SIGTERM, then SIGKILL), then any
    container shim or container left over (by this node's socket and cgroup), the cgroups,
    and the mount points made for it."""
    if not (node_dir / "node.json").exists():
        return
    config = NodeConfig.load(node_dir)
    pid_file = node_dir / "node.pid"
    pid = _read_pid(pid_file)
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        _wait_gone(pid, STOP_TIMEOUT)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            _wait_gone(pid, 10)
        pid_file.unlink(missing_ok=True)
    socket = str(Path(config.socket_dir) / "containerd.sock")
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and socket in _cmdline(proc):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)
    _remove_cgroups(config.cgroup_root)
    shutil.rmtree(config.socket_dir, ignore_errors=True)
    if any(Path(config.socket_dir).parent.glob("ocpr-sandbox-*")):
        return  # another sandbox's node (another network namespace) mounts on them too
    for mountpoint in config.created_mountpoints:
        with contextlib.suppress(OSError):
            Path(mountpoint).rmdir()  # only if still empty


def wait_ready(node_dir: Path, client: Any, timeout: float = READY_TIMEOUT) -> None:
    """Until the node is registered and Ready; then it gets the master label (a kubelet may
    not set node-role labels on itself)."""
    logs = f"read {node_dir}/node.log and {node_dir}/kubelet.log"
    conditions: dict[str, str] = {}

    def ready() -> bool:
        node = client.get("Node", NODE_NAME)
        conditions.clear()
        conditions.update({c["type"]: c["status"]
                           for c in (node or {}).get("status", {}).get("conditions", [])})
        if conditions.get("Ready") == "True":
            return True
        pid = _read_pid(node_dir / "node.pid")
        if pid is None or not _alive(pid):
            raise PreconditionFailed("the sandbox's node (containerd and kubelet) stopped",
                                     state=f"node {NODE_NAME}: "
                                     f"{conditions or 'not registered'}", next_step=logs)
        return False

    wait_until(ready, timeout=timeout, what=f"the sandbox's kubelet to register {NODE_NAME} "
               "Ready", next_step=logs,
               progress=lambda: str(conditions or "not registered"))
    client.merge_patch("Node", NODE_NAME,
                       {"metadata": {"labels": {"node-role.kubernetes.io/master": ""}}})


# ---- the supervisor (inside the mount namespace) ----------------------------------------
def supervise(node_dir: Path) -> int:
    config = NodeConfig.load(node_dir)
    containerd_dir = node_dir / "containerd"
    socket = Path(config.socket_dir) / "containerd.sock"
    _bind_mounts(config, node_dir)
    children: list[subprocess.Popen[bytes]] = []

    def stop_children(*_: object) -> None:
        for child in reversed(children):  # the kubelet, then containerd
            with contextlib.suppress(ProcessLookupError):
                child.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(STOP_TIMEOUT / 2)
            with contextlib.suppress(ProcessLookupError):
                child.kill()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop_children)
    _make_cgroups(config.cgroup_root)
    children.append(_spawn([config.binaries.containerd, "--config",
                            str(containerd_dir / "config.toml")], node_dir / "containerd.log"))
    deadline = time.monotonic() + 30
    while not socket.exists():
        if time.monotonic() > deadline or children[0].poll() is not None:
            print(f"containerd did not open {socket}; see {node_dir}/containerd.log")
            stop_children()
        time.sleep(0.1)
    ctr = [config.binaries.ctr, "--address", str(socket), "-n", "k8s.io", "images"]
    for archive in (node_dir / "pause.tar", Path(config.toolbox_image)):
        started = time.monotonic()
        subprocess.run([*ctr, "import", "--all-platforms", "--snapshotter", config.snapshotter,
                        str(archive)],
                       check=True, timeout=300, stdout=subprocess.DEVNULL)
        print(f"imported {archive} in {time.monotonic() - started:.1f}s", flush=True)
    subprocess.run([*ctr, "tag", "--force", _qualified(config.toolbox_image_name),
                    TOOLBOX_IMAGE], check=True, timeout=60, stdout=subprocess.DEVNULL)
    children.append(_spawn([
        config.binaries.kubelet, f"--config={node_dir}/kubelet/config.yaml",
        f"--kubeconfig={node_dir}/kubelet/kubeconfig",
        "--container-runtime=remote", f"--container-runtime-endpoint=unix://{socket}",
        # Under the short socket dir too: the kubelet opens unix sockets in its root dir.
        f"--root-dir={config.socket_dir}/kubelet", f"--cert-dir={node_dir}/kubelet/pki",
        f"--volume-plugin-dir={node_dir}/kubelet/plugins",
        f"--hostname-override={NODE_NAME}", f"--node-ip={MasterSpec(0).ip}", "--v=1"],
        node_dir / "kubelet.log"))
    while all(child.poll() is None for child in children):
        time.sleep(0.5)
    print("containerd or the kubelet exited; stopping the node", flush=True)
    stop_children()
    return 1


def _qualified(image: str) -> str:
    """podman's short names are localhost/NAME:TAG in its archives."""
    name = image if "/" in image else f"localhost/{image}"
    return name if ":" in name.rsplit("/", 1)[1] else f"{name}:latest"


def _bind_mounts(config: NodeConfig, node_dir: Path) -> None:
    sources = {path: Path(config.root) / path.lstrip("/") for path in HOST_PATHS}
    sources[POD_LOGS] = node_dir / "pods"
    for target, source in sources.items():
        source.mkdir(parents=True, exist_ok=True)
        Path(target).mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "--bind", str(source), target], check=True, timeout=10)


def _spawn(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115
    with log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)


def _file_system_type(path: Path) -> str:
    """The type of the file system `path` is on, from the longest mount point above it."""
    target, best, kind = path.resolve(), -1, ""
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            _, mount_point, fs_type = line.split()[:3]
            point = Path(mount_point.replace("\\040", " "))
            if (point == target or point in target.parents) and len(point.parts) > best:
                best, kind = len(point.parts), fs_type
    return kind


def _containerd_config(directory: Path, socket_dir: Path, snapshotter: str) -> str:
    # restrict_oom_score_adj: the kubelet asks -998 for pod sandboxes, which needs
    # CAP_SYS_RESOURCE; a machine without it (a container) fails every pod otherwise.
    return f"""version = 2
root = "{directory}/root"
state = "{directory}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{socket_dir}/containerd.sock"
[ttrpc]
  address = "{socket_dir}/containerd.sock.ttrpc"
[debug]
  address = "{socket_dir}/debug.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "{snapshotter}"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{directory}/cni"
"""


def _kubelet_config(cgroup_root: str) -> dict[str, Any]:
    ip = MasterSpec(0).ip
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": ip, "port": KUBELET_PORT, "readOnlyPort": 0,
        "healthzBindAddress": ip, "healthzPort": KUBELET_HEALTHZ_PORT,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "cgroupDriver": "cgroupfs", "cgroupRoot": f"/{cgroup_root}",
        "failSwapOn": False, "staticPodPath": "",
        "registerWithTaints": [{"key": "node-role.kubernetes.io/master",
                                "effect": "NoSchedule"}],
        # A shared test machine's disk is often over the default thresholds: evicting the
        # backup pod would test the machine, not the toolbox.
        "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "enforceNodeAllocatable": [], "localStorageCapacityIsolation": False,
    }


def _pause_archive(binary: Path) -> bytes:
    """An OCI image archive holding only /pause, for `ctr images import`."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tar.gettarinfo(str(binary), "pause")
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        with binary.open("rb") as f:
            tar.addfile(info, f)
    layer_bytes = layer.getvalue()
    layer_digest = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    image_config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/pause"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]}}).encode()
    config_digest = "sha256:" + hashlib.sha256(image_config).hexdigest()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": len(image_config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": len(layer_bytes)}]}).encode()
    manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest, "size": len(manifest),
        "annotations": {"io.containerd.image.name": PAUSE_IMAGE,
                        "org.opencontainers.image.ref.name": PAUSE_IMAGE.rsplit(":", 1)[1]}}]})
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        files = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}', "index.json": index.encode(),
                 f"blobs/sha256/{layer_digest[7:]}": layer_bytes,
                 f"blobs/sha256/{config_digest[7:]}": image_config,
                 f"blobs/sha256/{manifest_digest[7:]}": manifest}
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _cgroup_controllers() -> list[Path]:
    base = Path("/sys/fs/cgroup")
    return [c for c in base.iterdir() if c.is_dir() and not c.is_symlink()] \
        if base.is_dir() else []


def _make_cgroups(cgroup_root: str) -> None:
    """The kubelet requires its --cgroup-root to exist in every controller."""
    for controller in _cgroup_controllers():
        (controller / cgroup_root).mkdir(exist_ok=True)


def _remove_cgroups(cgroup_root: str) -> None:
    """Kill what is left in this node's cgroups (every v1 controller) and remove them,
    deepest first."""
    for controller in _cgroup_controllers():
        top = controller / cgroup_root
        if not top.is_dir():
            continue
        groups = [*sorted((p for p in top.rglob("*") if p.is_dir()),
                          key=lambda p: len(p.parts), reverse=True), top]
        for group in groups:
            with contextlib.suppress(OSError):
                for pid in (group / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
        for group in groups:
            deadline = time.monotonic() + 5
            while True:
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.05)


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def node_signer(store: rotation.MemoryStore) -> certs.Issued:
    """The csr-signer, which signs a real node's client certificate after its CSR."""
    pair = rotation.secret_pair(store.get("Secret", rotation.CSR_SIGNER_FOR_KCM))
    if pair is None:
        raise PreconditionFailed("the sandbox's control plane has no csr-signer")
    return pair


if __name__ == "__main__":
    sys.exit(supervise(Path(sys.argv[1])))
