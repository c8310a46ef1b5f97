"""`snapshot browse BACKUP`: the whole backup served by a kube-apiserver of its own, read with
`oc`/`kubectl` as people know them, on this master's localhost; `--stop` removes it all.

The snapshot is restored (etcdutl, as a restore would) into a scratch data dir, and a static
pod runs a scratch etcd on it (127.0.0.1 only, TLS with a throw-away CA that trusts nobody
else) and a kube-apiserver from the cluster's own image on 127.0.0.1:7444, decrypting with
the encryption config archived in the same set. Nothing of it talks to the live etcd. The
kube-apiserver is the one the recovery API server (guide 3.4) runs, so it serves the
backup's OpenShift types as the cluster's did.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from toolbox import log
from toolbox.context import SCALED_SECONDS_PER_GIB, Context, longer_health_wait
from toolbox.errors import InvalidInput, PreconditionFailed, RecoveryError
from toolbox.etcd.snapshot import verify_file
from toolbox.host.archive import read_revision_file
from toolbox.host.backups import resolve_set_input
from toolbox.host.files import (
    atomic_write,
    ensure_private_dir,
    nearest_existing,
    partial_path,
    remove_quietly,
)
from toolbox.host.lock import host_lock
from toolbox.journal import Confirmation
from toolbox.kube.client import KubeClient
from toolbox.kube.local_apiserver import (
    IN_POD,
    LocalPki,
    apiserver_config,
    apiserver_container,
    static_pod,
)
from toolbox.kube.manifests import load_pod
from toolbox.objects.backup import ENCRYPTION_CONFIG
from toolbox.procedures.recovery_apiserver import CONTAINER, EMPTY_ENCRYPTION
from toolbox.procedures.restore import SPACE_FLOOR, SPACE_MARGIN, RestoreTool, restore_tool
from toolbox.report import Report
from toolbox.waiting import wait_until

_log = log.get(__name__)

API_PORT = 7444
SERVER = f"https://localhost:{API_PORT}"
ETCD_CLIENT = "https://127.0.0.1:12379"
ETCD_PEER = "http://127.0.0.1:12380"  # one member, on loopback: no peer ever connects
PORTS = (API_PORT, 12379, 12380)
VALID_DAYS = 1
MEMBER = "browse"
DATA = "etcd"   # the scratch data dir, in the browse dir
SOURCE = "backup"  # which backup is served, for the next `browse` refused


@dataclass(frozen=True)
class BrowsePlan:
    backup: str
    snapshot: str                 # host path
    archive: str | None           # host path
    revision: int
    etcd_image: str
    apiserver_image: str
    tool: RestoreTool
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class Browsing:
    backup: str
    revision: int
    kubeconfig: str
    expires: str

    def report(self) -> Report:
        return Report(
            "snapshot.browse.ready",
            f"{self.backup} (revision {self.revision}) is served by a scratch kube-apiserver "
            f"on {SERVER}; nothing of it touches the live etcd (what you change there goes "
            "nowhere)",
            {"backup": self.backup, "kubeconfig": self.kubeconfig, "server": SERVER,
             "expires": self.expires},
            details=["to look inside it:",
                     f"    oc --kubeconfig {self.kubeconfig} get namespaces",
                     f"    oc --kubeconfig {self.kubeconfig} get deploy -n NAMESPACE -o yaml"],
            next=["ocp-recovery snapshot browse --stop (when done: it removes it all)"])


def changes(ctx: Context, plan: BrowsePlan) -> list[str]:
    shown = ctx.paths.shown
    return [
        f" 1. restore-scratch-etcd: {plan.tool.flavor} snapshot restore {plan.snapshot} into "
        f"{shown(ctx.paths.browse_dir / DATA)}",
        f" 2. write-browse-dir: {shown(ctx.paths.browse_dir)}: a {VALID_DAYS}-day CA, "
        "certificates for etcd and the kube-apiserver, the backup's encryption config, "
        "admin.kubeconfig",
        f" 3. write-manifest: {shown(ctx.paths.browse_manifest)} (kubelet starts the scratch "
        f"etcd on {ETCD_CLIENT} and a kube-apiserver on 127.0.0.1:{API_PORT})",
        f" 4. wait-ready: up to {ctx.timeouts.health:.0f}s plus "
        f"{SCALED_SECONDS_PER_GIB:.0f}s per GiB of the snapshot for {SERVER}/readyz",
        "(not journaled: if any step fails, all of it is removed again)",
    ]


def confirmation(plan: BrowsePlan) -> Confirmation:
    return Confirmation(f"serve {plan.backup} (revision {plan.revision}) on {SERVER}",
                        "Start a scratch etcd and kube-apiserver on this master?")


def start(ctx: Context, plan: BrowsePlan) -> Browsing:
    """The steps, under the host lock. Not journaled: it changes nothing of the cluster, so
    a failure (or Ctrl-C) removes all of it and there is nothing to resume or roll back, and
    an earlier operation's rollback stays offered."""
    paths = ctx.paths
    with host_lock(paths.state_dir, "snapshot browse"):
        try:
            _restore(ctx, plan)
            expires = _write_browse_dir(ctx, plan)
            _write_manifest(ctx, plan)
            _wait_ready(ctx, plan)
        except BaseException as exc:
            _remove_all(ctx)
            if isinstance(exc, RecoveryError):
                exc.state = "unchanged: the scratch pod and its files were removed again"
            raise
    return Browsing(plan.backup, plan.revision, paths.shown(paths.browse_dir / "admin.kubeconfig"),
                    expires)


def plan(ctx: Context, backup: str) -> BrowsePlan:
    paths = ctx.paths
    for existing in (paths.browse_manifest, paths.browse_dir):
        if existing.exists():
            source = paths.browse_dir / SOURCE
            raise PreconditionFailed(
                "a backup is being browsed already"
                + (f": {source.read_text().strip()}" if source.is_file() else "")
                + f" ({paths.shown(existing)})",
                next_step=f"use it (oc --kubeconfig "
                f"{paths.shown(paths.browse_dir / 'admin.kubeconfig')} …), or remove it with "
                "`ocp-recovery snapshot browse --stop` first")
    busy = [p for p in PORTS if _listening(p)]
    if busy:
        raise PreconditionFailed(f"127.0.0.1:{busy[0]} is in use: the scratch etcd and "
                                 f"kube-apiserver need ports {', '.join(map(str, PORTS))}",
                                 next_step=f"find what listens there (ss -ltnp | grep "
                                 f"{busy[0]}) and stop it")
    given = resolve_set_input(paths.host(backup), backup)
    if given.snapshot is None:
        raise InvalidInput(f"{backup} is a 4.3.0 single-file backup",
                           next_step=f"tar -xzf {backup} snapshot.db, then browse that file")
    report = verify_file(given.snapshot, shown=backup)
    paths.require_free_space(nearest_existing(paths.browse_dir),
                             int(report.size * SPACE_MARGIN) + SPACE_FLOOR,
                             "the scratch etcd's data dir")
    warnings = () if given.archive else (
        f"{backup} comes without its static_kuberesources archive: values encrypted at rest "
        "(Secrets) cannot be read in it",)
    return BrowsePlan(backup, paths.shown(given.snapshot),
                      paths.shown(given.archive) if given.archive else None, report.revision,
                      _image(ctx, "etcd-member.yaml", lambda c: c.get("name") == "etcd-member"),
                      _image(ctx, "kube-apiserver-pod.yaml",
                             lambda c: bool(CONTAINER.match(c.get("name", "")))),
                      restore_tool(ctx), warnings)


def _image(ctx: Context, manifest: str, pick: Any) -> str:
    path = ctx.paths.manifests / manifest
    pod = load_pod(path, ctx.paths.shown(path))
    images = [c.get("image", "") for c in pod["spec"].get("containers", []) if pick(c)]
    if not images or not images[-1]:
        raise PreconditionFailed(f"{ctx.paths.shown(path)} names no container image to run "
                                 "the scratch pod with",
                                 next_step="run this on a master whose static pods are in place")
    return str(images[-1])


def _restore(ctx: Context, plan: BrowsePlan) -> None:
    browse = ctx.paths.browse_dir
    data = browse / DATA
    if data.exists():
        return
    ensure_private_dir(browse)
    staging = partial_path(data)
    remove_quietly(staging)
    snapshot = ctx.paths.host(plan.snapshot)
    ctx.executor.run_tool(
        plan.tool.argv(snapshot, staging, name=MEMBER, initial_cluster=f"{MEMBER}={ETCD_PEER}",
                       peer_url=ETCD_PEER, skip_hash_check=True, bump=None),  # verified in plan
        timeout=ctx.timeouts.scaled(ctx.timeouts.command, snapshot.stat().st_size))
    staging.chmod(0o700)
    staging.rename(data)


def _write_browse_dir(ctx: Context, plan: BrowsePlan) -> str:
    """The files; returns when the CA expires."""
    browse = ctx.paths.browse_dir
    pki = LocalPki.create("browse", SERVER, VALID_DAYS, with_etcd=True)
    for name, (data, mode) in pki.files.items():
        atomic_write(browse / name, data, mode)
    archived = read_revision_file(ctx.paths.host(plan.archive), ENCRYPTION_CONFIG) \
        if plan.archive else None
    atomic_write(browse / "encryption-config", archived or EMPTY_ENCRYPTION, 0o600)
    atomic_write(browse / SOURCE, f"{plan.backup} (revision {plan.revision})\n".encode(), 0o644)
    atomic_write(browse / "config.yaml", apiserver_config(f"127.0.0.1:{API_PORT}",
                                                          (ETCD_CLIENT,)), 0o644)
    return pki.expires


def _etcd_container(image: str) -> dict[str, Any]:
    def file(name: str) -> str:
        return f"{IN_POD}/{name}"

    return {"name": "etcd-browse", "image": image,
            "command": ["etcd", f"--name={MEMBER}", f"--data-dir={file(DATA)}",
                        f"--listen-client-urls={ETCD_CLIENT}",
                        f"--advertise-client-urls={ETCD_CLIENT}",
                        f"--listen-peer-urls={ETCD_PEER}",
                        f"--initial-advertise-peer-urls={ETCD_PEER}",
                        f"--initial-cluster={MEMBER}={ETCD_PEER}",
                        f"--cert-file={file('etcd-server.crt')}",
                        f"--key-file={file('etcd-server.key')}",
                        f"--trusted-ca-file={file('serving-ca.crt')}",
                        "--client-cert-auth", "--listen-metrics-urls="],
            "volumeMounts": [{"name": "resource-dir", "mountPath": IN_POD}]}


def _write_manifest(ctx: Context, plan: BrowsePlan) -> None:
    paths = ctx.paths
    atomic_write(paths.browse_manifest, static_pod(
        "ocp-recovery-browse", "browse",
        [_etcd_container(plan.etcd_image),
         apiserver_container("kube-apiserver-browse", plan.apiserver_image, API_PORT)],
        paths.shown(paths.browse_dir)), 0o644)


def _wait_ready(ctx: Context, plan: BrowsePlan) -> None:
    """The scratch etcd opens the restored db before the kube-apiserver can be ready: the
    wait grows with the snapshot."""
    paths = ctx.paths
    kubeconfig = paths.browse_dir / "admin.kubeconfig"
    client = KubeClient.from_file(kubeconfig, paths.host, paths.shown(kubeconfig),
                                  timeout=ctx.timeouts.dial)
    timeout = ctx.timeouts.scaled(ctx.timeouts.health, paths.host(plan.snapshot).stat().st_size)
    client.wait_ready(timeout, next_step=(
        "check the pod's containers (`crictl ps --name browse`, `crictl logs <id>`), then run "
        "the same command again; " + longer_health_wait("snapshot browse")))


def stop(ctx: Context) -> str | None:
    """Remove the browse pod, wait until it stopped, then its directory. Returns what was
    removed, for the report; None when nothing was there."""
    paths = ctx.paths
    if not paths.browse_manifest.exists() and not paths.browse_dir.exists():
        return None
    with host_lock(paths.state_dir, "snapshot browse --stop"):
        _remove_all(ctx)
    _log.info("snapshot.browse.stopped")
    return f"{paths.shown(paths.browse_manifest)} and {paths.shown(paths.browse_dir)}"


def _remove_all(ctx: Context) -> None:
    remove_quietly(ctx.paths.browse_manifest)
    _wait_stopped(ctx)
    remove_quietly(ctx.paths.browse_dir)


def _wait_stopped(ctx: Context) -> None:
    wait_until(lambda: not any(_listening(p) for p in PORTS), timeout=ctx.timeouts.pod_stop,
               what=f"the scratch etcd and kube-apiserver (ports {PORTS}) to stop",
               next_step="check `crictl ps --name browse`, then run `ocp-recovery snapshot "
               "browse --stop` again")


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
