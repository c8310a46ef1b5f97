"""A sandbox: N simulated masters, each a host root, a node agent and a real etcd."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from toolbox.errors import EtcdUnavailable, InvalidInput, PreconditionFailed, WaitTimedOut
from toolbox.etcd.client import EtcdClient, TlsFiles
from toolbox.etcd.cluster import render_initial_cluster
from toolbox.kube.client import KubeClient
from toolbox.sandbox import controlplane
from toolbox.sandbox.agent import write_shims
from toolbox.sandbox.binaries import (
    EtcdBinaries,
    find_etcd,
    find_kube_controller_manager,
    require_container_runtime,
    require_kube_controller_manager,
    require_node_components,
)
from toolbox.sandbox.layout import (
    ETCD_CONF_43,
    SANDBOX_PEER_IPS,
    SIGNER_CA_DIR,
    ClusterPki,
    EtcdConf,
    MasterSpec,
    lay_out_master,
)

if TYPE_CHECKING:
    # Imported where used: objectstore uses this module's process helpers.
    from toolbox.sandbox.objectstore import ObjectStore

DEFAULT_DIR = Path("/var/tmp/ocp-recovery-sandbox")
HEALTH_TIMEOUT = 60.0
# The sandbox store's buckets, made at `up`: one plain, one with Object Lock (--lock-days).
SANDBOX_BUCKETS = {"backups": False, "backups-locked": True}
API_TIMEOUT = 180.0  # kube-apiserver's first start bootstraps RBAC: slow on 2 cores


@dataclass(frozen=True)
class MasterStatus:
    spec: MasterSpec
    agent_running: bool
    host_present: bool
    etcd: str  # "healthy (leader)", "healthy", NO_QUORUM, "down: ..."


# A member that answers but knows no leader: up, yet its cluster has lost quorum.
NO_QUORUM = "running, no leader: its cluster has no quorum"


class Sandbox:
    def __init__(self, directory: Path):
        self.dir = directory.resolve()
        self.state_file = self.dir / "sandbox.json"

    # ---- state -----------------------------------------------------------------------
    def _state(self) -> dict:  # type: ignore[type-arg]
        if not self.state_file.exists():
            raise PreconditionFailed(
                f"no sandbox in {self.dir}",
                next_step=f"if yours is elsewhere, give its --dir (or export "
                f"OCP_RECOVERY_SANDBOX=<its dir>); else ocp-recovery sandbox up --dir {self.dir}")
        return json.loads(self.state_file.read_text())

    def _save(self, state: dict) -> None:  # type: ignore[type-arg]
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    @property
    def exists(self) -> bool:
        return self.state_file.exists()

    @property
    def binaries(self) -> EtcdBinaries:
        return EtcdBinaries.from_dict(self._state()["etcd"])

    @property
    def masters(self) -> list[int]:
        return list(self._state()["masters"])

    def master_dir(self, index: int) -> Path:
        return self.dir / "masters" / f"master-{index}"

    def root(self, index: int) -> Path:
        return self.master_dir(index) / "root"

    def spec(self, index: int) -> MasterSpec:
        return MasterSpec(index)

    @property
    def pki(self) -> ClusterPki:
        return ClusterPki.load(self.dir / "pki")

    @property
    def client_tls(self) -> TlsFiles:
        pki = self.dir / "pki"
        return TlsFiles(pki / "etcd_ca.crt", pki / "etcd_client.crt", pki / "etcd_client.key",
                        source="sandbox pki")

    @property
    def object_store(self) -> ObjectStore | None:
        """The sandbox's Ceph RADOS Gateway, when it was started with one."""
        from toolbox.sandbox.objectstore import ObjectStore

        saved = self._state().get("object_store")
        return ObjectStore.from_state(saved) if saved else None

    @property
    def tools_dir(self) -> Path:
        """etcdctl (and etcdutl) of the sandbox's etcd version, for PATH."""
        return self.dir / "bin"

    # ---- lifecycle ---------------------------------------------------------------------
    @classmethod
    def up(cls, directory: Path, *, masters: int = 3, etcd: str = "3.5",
           timeout: float = HEALTH_TIMEOUT, kube_apiserver: Path | None = None,
           object_store: bool = False, kubernetes_image: str | None = None,
           etcd_conf: EtcdConf = ETCD_CONF_43) -> Sandbox:
        """`kube_apiserver`: the binary that runs kube-apiserver static pods configured with
        `--openshift-config` (binaries.find_kube_apiserver); None keeps them placeholders.
        With it, master-0 also runs a real kube-controller-manager when one is found.
        `object_store`: also a real S3 store (Ceph RADOS Gateway), after the masters.
        `kubernetes_image`: master-0 is also a Kubernetes node (node.py) running pods of this
        toolbox image (a podman image name); needs `kube_apiserver`. Then master-0's etcd
        also listens on 127.0.0.1, as a real master's does on every address, and the API's
        storage is every member, so one etcd can stop under a running API.
        `etcd_conf`: every member's etcd.conf (4.3's by default), also for masters added
        later."""
        from toolbox.sandbox.objectstore import ObjectStore

        sandbox = cls(directory)
        if sandbox.exists:
            raise PreconditionFailed(f"a sandbox already exists in {sandbox.dir}",
                                     next_step=f"ocp-recovery sandbox down --dir {sandbox.dir}")
        if not 1 <= masters <= 9:
            raise PreconditionFailed("a sandbox has 1 to 9 masters")
        binaries = find_etcd(etcd)
        for i in range(masters):
            _require_free(MasterSpec(i).ip, (2379, 2380))
        if object_store:
            ObjectStore.require_available()
        node_parts: dict[str, Path] = {}
        if kubernetes_image:
            if not kube_apiserver:
                raise PreconditionFailed("a sandbox Kubernetes node needs the kube-apiserver")
            node_parts = {**require_node_components(), **require_container_runtime()}
            require_kube_controller_manager()
            _require_free("127.0.0.1", (2379,))
            _require_image(kubernetes_image)
        sandbox.dir.mkdir(parents=True, exist_ok=True)
        pki = ClusterPki.create()
        pki.save(sandbox.dir / "pki")
        sandbox.tools_dir.mkdir(exist_ok=True)
        for tool in (binaries.etcdctl, binaries.etcdutl):
            if tool is not None:
                (sandbox.tools_dir / tool.name).symlink_to(tool)
        indices = list(range(masters))
        controller_manager = find_kube_controller_manager() if kube_apiserver else None
        sandbox._save({"etcd": binaries.as_dict(), "masters": indices, "next_index": masters,
                       "kube_apiserver": str(kube_apiserver) if kube_apiserver else None,
                       "kube_controller_manager":
                           str(controller_manager) if controller_manager else None,
                       "kube_scheduler": str(node_parts["kube-scheduler"])
                       if node_parts else None,
                       "kubernetes_image": kubernetes_image, "etcd_conf": asdict(etcd_conf)})
        initial = render_initial_cluster([(MasterSpec(i).member_name, MasterSpec(i).peer_url)
                                          for i in indices])
        for i in indices:
            sandbox._create_host(i, pki, initial_cluster=initial, blank=False)
        if kube_apiserver:
            sandbox._lay_out_control_plane()
        try:
            for i in indices:
                sandbox.start_master(i)
            sandbox.wait_healthy(indices, timeout)
            if kube_apiserver:
                sandbox._seed_api(API_TIMEOUT)
            if kubernetes_image:
                sandbox._start_node(kubernetes_image, node_parts)
            if object_store:
                store = ObjectStore.up(sandbox.dir / "object-store")
                for bucket, locked in SANDBOX_BUCKETS.items():
                    store.create_bucket(bucket, object_lock=locked)
                state = sandbox._state()
                state["object_store"] = store.state()
                sandbox._save(state)
        except BaseException:
            # Nothing left running on the sandbox addresses; the files stay for the logs.
            sandbox.power_off()
            raise
        return sandbox

    @property
    def admin_kubeconfig(self) -> Path:
        """The installer's admin kubeconfig of the sandbox's kube-apiserver (on master-0)."""
        return self.dir / "admin.kubeconfig"

    @property
    def node_dir(self) -> Path:
        """The sandbox's Kubernetes node (`--kubernetes`): its config, logs, pod logs."""
        return self.dir / "node"

    @property
    def kubectl(self) -> Path | None:
        """The kubectl of the sandbox's Kubernetes version, when it has a node."""
        scheduler = self._state().get("kube_scheduler")
        return Path(scheduler).with_name("kubectl") if scheduler else None

    def _lay_out_control_plane(self) -> None:
        spec = MasterSpec(0)
        pki = controlplane.ControlPlanePki.create(spec)
        pki.save(self.dir / "pki")
        state = self._state()
        urls = [MasterSpec(i).client_url for i in self.masters] \
            if state.get("kubernetes_image") else [spec.client_url]
        controlplane.write_kube_apiserver_files(self.root(0), spec, pki, urls)
        if state.get("kube_controller_manager"):
            controlplane.write_kube_controller_manager_files(self.root(0), spec, pki)
        if state.get("kube_scheduler"):
            controlplane.write_kube_scheduler_files(self.root(0), spec, pki)
        self.admin_kubeconfig.write_bytes(pki.admin_kubeconfig(spec))
        self.admin_kubeconfig.chmod(0o600)

    def expire_control_plane(self) -> None:
        if not self.admin_kubeconfig.exists():
            raise PreconditionFailed(f"the sandbox in {self.dir} has no kube-apiserver",
                                     next_step="ocp-recovery sandbox up --kube-apiserver")
        client = KubeClient.from_file(self.admin_kubeconfig, timeout=10)
        controlplane.expire(client, controlplane.ControlPlanePki.load(self.dir / "pki"),
                            self.root(0))

    def _seed_api(self, timeout: float) -> None:
        client = KubeClient.from_file(self.admin_kubeconfig, timeout=10)
        client.wait_ready(timeout, next_step=f"read {self.master_dir(0)}/logs/"
                          "kube-apiserver-*.log")
        controlplane.seed(client, controlplane.ControlPlanePki.load(self.dir / "pki"),
                          MasterSpec(0), timeout)

    def _start_node(self, image: str, parts: dict[str, Path]) -> None:
        from toolbox.sandbox import node

        self.node_dir.mkdir(parents=True, exist_ok=True)
        archive = self.node_dir / "toolbox-image.tar"
        subprocess.run(["podman", "save", "--format", "oci-archive", "-o", str(archive), image],
                       check=True, timeout=300, capture_output=True)
        pki = controlplane.ControlPlanePki.load(self.dir / "pki")
        node.lay_out(self.node_dir, root=self.root(0), binaries=node.NodeBinaries(
            kubelet=str(parts["kubelet"]), containerd=str(parts["containerd"]),
            ctr=str(parts["ctr"]), pause=str(parts["pause"])),
            toolbox_image=archive, toolbox_image_name=image,
            node_signer=node.node_signer(pki.current), serving_cas=pki.serving_cas(),
            api_url=controlplane.api_url(MasterSpec(0)))
        node.start(self.node_dir)
        client = KubeClient.from_file(self.admin_kubeconfig, timeout=10)
        node.wait_ready(self.node_dir, client)

    def _create_host(self, index: int, pki: ClusterPki, *, initial_cluster: str | None,
                     blank: bool) -> None:
        spec = MasterSpec(index)
        master_dir = self.master_dir(index)
        master_dir.mkdir(parents=True, exist_ok=True)
        state = self._state()
        lay_out_master(self.root(index), spec, pki, initial_cluster=initial_cluster,
                       blank=blank, etcd_conf=EtcdConf(**state.get("etcd_conf", {})))
        (master_dir / "master.json").write_text(json.dumps({
            "index": index, "root": str(self.root(index)),
            "etcd": str(self.binaries.etcd),
            "kube_apiserver": state.get("kube_apiserver"),
            "kube_controller_manager": state.get("kube_controller_manager"),
            "kube_scheduler": state.get("kube_scheduler"),
            # A real master's etcd listens on every address; the node's pods dial 127.0.0.1.
            "etcd_on_localhost": index == 0 and bool(state.get("kubernetes_image"))}))
        write_shims(master_dir, spec.node_name)

    def start_master(self, index: int) -> None:
        """Power the host on: start its node agent (which starts its static pods)."""
        master_dir = self.master_dir(index)
        if not self.root(index).is_dir():
            raise PreconditionFailed(f"master-{index} has no host root (wiped)")
        if self._agent_pid(index):
            return
        log = open(master_dir / "agent.log", "ab")  # noqa: SIM115
        with log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "toolbox.sandbox.agent", str(master_dir)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=self.dir,
                env={**os.environ, "PYTHONPATH": _package_parent()},
            )
        (master_dir / "agent.pid").write_text(str(proc.pid))

    def stop_master(self, index: int) -> None:
        """Power the host off: SIGKILL its agent and every process it started."""
        pid = self._agent_pid(index)
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            _wait_gone(pid, 10)
        (self.master_dir(index) / "agent.pid").unlink(missing_ok=True)

    def wipe_master(self, index: int) -> None:
        """A lost host: powered off and its disk gone."""
        self.stop_master(index)
        shutil.rmtree(self.root(index), ignore_errors=True)
        state = self._state()
        state["masters"] = [i for i in state["masters"] if i != index]
        self._save(state)

    def add_master(self) -> int:
        """A new blank master (MCO files only) on the next free address, powered on."""
        state = self._state()
        index = state["next_index"]
        state["next_index"] = index + 1
        state["masters"].append(index)
        self._save(state)
        self._create_host(index, self.pki, initial_cluster=None, blank=True)
        self.start_master(index)
        # Booted means its etcd-member pod ran the discovery init step, as on a real host.
        env_file = self.root(index) / "run/etcd/environment"
        deadline = time.monotonic() + HEALTH_TIMEOUT
        while not env_file.exists():
            if time.monotonic() > deadline:
                raise WaitTimedOut(f"master-{index}'s node agent did not start its etcd-member "
                                   f"pod within {HEALTH_TIMEOUT:.0f}s",
                                   next_step=f"read {self.master_dir(index)}/agent.log")
            time.sleep(0.05)
        return index

    def signer_master(self) -> int | None:
        """The first running master with its etcd server certificate and the signer's CA
        files: where `signer serve` can run for a new master."""
        for index in self.masters:
            root = self.root(index)
            member_dir = root / "etc/kubernetes/static-pod-resources/etcd-member"
            if self._agent_pid(index) and (root / SIGNER_CA_DIR.lstrip("/")).is_dir() and (
                    member_dir / f"system:etcd-server:{MasterSpec(index).dns_name}.crt"
            ).is_file():
                return index
        return None

    def power_off(self) -> None:
        """Kill every master's processes and stop the object store, keep the files (for a
        failed drill's post-mortem)."""
        from toolbox.sandbox import node

        node.stop(self.node_dir)
        store = self.object_store if self.exists else None
        if store is not None:
            store.stop()
        masters_dir = self.dir / "masters"
        if masters_dir.is_dir():
            for master_dir in masters_dir.iterdir():
                pid = _read_pid(master_dir / "agent.pid")
                if pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
                    _wait_gone(pid, 10)
                    # Its etcd, killed with it, closes its listeners only once it has
                    # exited, a moment later: a sandbox started next finds them taken.
                    ip = MasterSpec(int(master_dir.name.rsplit("-", 1)[1])).ip
                    deadline = time.monotonic() + 10
                    while not all(_bindable(ip, port) for port in (2379, 2380)) and \
                            time.monotonic() < deadline:
                        time.sleep(0.02)

    def down(self) -> None:
        if not self.dir.exists():
            return
        self.power_off()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _agent_pid(self, index: int) -> int | None:
        pid = _read_pid(self.master_dir(index) / "agent.pid")
        return pid if pid and _alive(pid) else None

    # ---- observing ---------------------------------------------------------------------
    def client(self, index: int, timeout: float = 2.0) -> EtcdClient:
        return EtcdClient.connect_any((MasterSpec(index).client_url,), self.client_tls,
                                      dial=timeout, stream_idle=30)

    def wait_healthy(self, indices: list[int], timeout: float = HEALTH_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        pending = set(indices)
        last_error = ""
        while pending:
            for index in sorted(pending):
                try:
                    with self.client(index) as c:
                        if c.status().leader:
                            pending.discard(index)
                except EtcdUnavailable as exc:
                    last_error = exc.what
            if not pending:
                return
            if time.monotonic() > deadline:
                raise WaitTimedOut(
                    f"sandbox masters {sorted(pending)} did not become healthy etcd members "
                    f"within {timeout:.0f}s (last: {last_error})",
                    next_step=f"read {self.dir}/masters/master-N/logs/*.log",
                )
            time.sleep(0.1)

    def status(self) -> list[MasterStatus]:
        rows = []
        for index in self.masters:
            spec = MasterSpec(index)
            etcd = "down"
            try:
                with self.client(index, timeout=1.0) as c:
                    st = c.status()
                    quorate = bool(st.leader) and _reads_with_quorum(c)
                etcd = NO_QUORUM if not quorate else \
                    "healthy (leader)" if st.leader == st.member_id else "healthy"
            except EtcdUnavailable as exc:
                etcd = f"down: {exc.what}"
            rows.append(MasterStatus(spec, self._agent_pid(index) is not None,
                                     self.root(index).is_dir(), etcd))
        return rows

    def env(self, index: int) -> str:
        """Exports that make ocp-recovery act on master `index` as if run on that host."""
        masters = self.masters  # also: no sandbox in this directory at all
        if index not in masters:
            raise InvalidInput(
                f"the sandbox in {self.dir} has no master-{index} (its masters: "
                f"{', '.join(str(i) for i in masters) or 'none'})",
                next_step=f"ocp-recovery sandbox env N --dir {self.dir} with N one of those; "
                f"`ocp-recovery sandbox status --dir {self.dir}` shows them")
        spec = MasterSpec(index)
        bindir = self.master_dir(index) / "bin"
        return "\n".join([
            f"# sandbox {spec.node_name} ({spec.ip}); etcd member {spec.member_name}",
            f"export OCP_RECOVERY_HOST_ROOT={self.root(index)}",
            "export OCP_RECOVERY_HOST_EXEC=direct",
            f"export OCP_RECOVERY_SANDBOX={self.dir}  # later sandbox commands need no --dir",
            f"export ETCDCTL_ENDPOINTS={spec.client_url}",
            f"export PATH={bindir}:{self.tools_dir}:$PATH",
            f"export OCP_RECOVERY_SANDBOX_PEER_IPS={','.join(SANDBOX_PEER_IPS)}",
            "unset KUBECONFIG  # the default: this master's recovery API server",
            f"# etcdctl --cacert {self.client_tls.ca} --cert {self.client_tls.cert} "
            f"--key {self.client_tls.key} member list",
        ]) + "\n"

    def env_vars(self, index: int, base: dict[str, str]) -> dict[str, str]:
        """The same as `env`, applied to an environment dict (for drills and tests)."""
        spec = MasterSpec(index)
        return {
            **{k: v for k, v in base.items() if k != "KUBECONFIG"},
            "OCP_RECOVERY_HOST_ROOT": str(self.root(index)),
            "OCP_RECOVERY_HOST_EXEC": "direct",
            "ETCDCTL_ENDPOINTS": spec.client_url,
            "OCP_RECOVERY_SANDBOX_PEER_IPS": ",".join(SANDBOX_PEER_IPS),
            "PATH": f"{self.master_dir(index) / 'bin'}:{self.tools_dir}:"
                    f"{base.get('PATH', '/usr/bin:/bin')}",
        }


def _reads_with_quorum(client: EtcdClient) -> bool:
    """A linearizable read: it needs a quorum now. The status's leader field lags a lost
    quorum by an election timeout or two (measured: 1 s on a follower, 2 s on the leader)."""
    try:
        client.get(b"ocp-recovery-sandbox-health")
    except EtcdUnavailable:
        return False
    return True


def _require_image(image: str) -> None:
    found = subprocess.run(["podman", "image", "exists", image], capture_output=True,
                           timeout=60) if shutil.which("podman") else None
    if found is None or found.returncode != 0:
        raise PreconditionFailed(
            f"no toolbox image {image} in podman's storage for the sandbox's node",
            next_step="bash scripts/build-image.sh --local (then run this again)")


def _require_free(ip: str, ports: tuple[int, ...]) -> None:
    for port in ports:
        try:
            _bind_probe(ip, port)
        except OSError as exc:
            raise PreconditionFailed(
                f"{ip}:{port} is already in use ({exc.strerror}): another sandbox "
                "(or etcd) is running on the sandbox addresses",
                next_step="ocp-recovery sandbox down --dir <its directory> (or stop that "
                "process), then run this again",
            ) from exc


def _bindable(ip: str, port: int) -> bool:
    try:
        _bind_probe(ip, port)
    except OSError:
        return False
    return True


def _bind_probe(ip: str, port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((ip, port))


def _package_parent() -> str:
    return str(Path(__file__).resolve().parents[2])


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        # Reading the stat of a process that is exiting fails with ESRCH
        # (ProcessLookupError), not only ENOENT; the command name may hold spaces.
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return False
    return bool(fields) and fields[0] != "Z"


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
