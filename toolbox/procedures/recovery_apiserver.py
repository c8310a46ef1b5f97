"""Guide 3.4 steps 1-3: a recovery kube-apiserver on 127.0.0.1:7443, and its removal.

`cluster-kube-apiserver-operator recovery-apiserver create|destroy` (reference spec §10), made
safe: its own short-lived CA signs a serving certificate with the SANs modern TLS stacks need
(4.3 served the CA itself, with none), the encryption config is copied when the cluster has
one (BZ 1802161), modes are the octal ones intended (the Go tool's decimal 644 meant 0o1204),
a kill part-way is resumed or rolled back from the journal, and `create` waits (bounded)
until the API answers. `destroy` removes exactly the files `create` wrote.
"""

from __future__ import annotations

import datetime as dt
import re
import socket
from dataclasses import dataclass

from toolbox import log
from toolbox.context import Context
from toolbox.errors import PreconditionFailed
from toolbox.host.files import atomic_write, remove_quietly
from toolbox.host.lock import host_lock
from toolbox.journal import (
    Confirmation,
    Journal,
    Plan,
    Procedure,
    Step,
    StepRun,
    new_operation_id,
)
from toolbox.kube.client import KubeClient
from toolbox.kube.local_apiserver import LocalPki, apiserver_config, apiserver_container, static_pod
from toolbox.kube.manifests import host_path_of, load_pod
from toolbox.report import Report
from toolbox.waiting import wait_until

_log = log.get(__name__)

OPERATION = "recovery-apiserver-create"
BIND = "127.0.0.1:7443"
SERVER = "https://localhost:7443"
VALID_DAYS = 7
CONTAINER = re.compile(r"^kube-apiserver-[a-zA-Z0-9]+$")
# No encryption at rest; kube-apiserver refuses an empty resource list ("at least one
# resources is required"), so: secrets stored as they are.
EMPTY_ENCRYPTION = (b"apiVersion: apiserver.config.k8s.io/v1\n"
                    b"kind: EncryptionConfiguration\n"
                    b"resources:\n- resources: [secrets]\n  providers: [{identity: {}}]\n")
# name in the recovery dir -> (where create takes it from in the revision dir, mode)
COPIED = {"etcd-client.crt": ("secrets/etcd-client/tls.crt", 0o600),
          "etcd-client.key": ("secrets/etcd-client/tls.key", 0o600),
          "etcd-serving-ca-bundle.crt": ("configmaps/etcd-serving-ca/ca-bundle.crt", 0o644)}
ENCRYPTION = "secrets/encryption-config/encryption-config"
MADE = ("serving-ca.crt", "serving-ca.key", "serving.crt", "serving.key", "config.yaml",
        "encryption-config", "admin.kubeconfig")


@dataclass(frozen=True)
class CreatePlan(Plan):
    resource_dir: str             # host path of the kube-apiserver revision copied from
    image: str
    etcd_urls: tuple[str, ...]
    encrypted: bool


@dataclass(frozen=True)
class Created:
    kubeconfig: str      # host path
    expires: str

    def report(self) -> Report:
        return Report("recovery_apiserver.ready",
                      f"the recovery kube-apiserver answers on {SERVER}; "
                      f"{expiry_note(self.expires)}",
                      {"kubeconfig": self.kubeconfig, "expires": self.expires},
                      details=["to use it:", f"    export KUBECONFIG={self.kubeconfig}"],
                      next=["ocp-recovery regenerate-certificates"])


class RecoveryApiserverProcedure(Procedure[None, CreatePlan, Created]):
    operation = OPERATION
    plan_type = CreatePlan

    def plan(self, ctx: Context, request: None = None) -> CreatePlan:
        return plan(ctx)

    def steps(self, ctx: Context, plan: CreatePlan) -> list[Step[CreatePlan]]:
        paths = ctx.paths
        manifest = paths.shown(paths.recovery_apiserver_manifest)
        return [
            Step("write-recovery-dir",
                 f"create {paths.shown(paths.recovery_apiserver_dir)}: etcd client material, "
                 f"encryption config, a {VALID_DAYS}-day CA, serving cert (localhost, "
                 "127.0.0.1), admin.kubeconfig", _write_recovery_dir, _remove_recovery_dir),
            Step("write-manifest", f"write {manifest} (kubelet starts the recovery "
                 f"kube-apiserver on {BIND})", _write_manifest, _remove_manifest),
            Step("wait-ready", f"wait up to {ctx.timeouts.health:.0f}s for {SERVER}/readyz",
                 _wait_ready),
        ]

    def finish(self, ctx: Context, plan: CreatePlan, journal: Journal) -> Created:
        return Created(ctx.paths.shown(ctx.paths.recovery_kubeconfig),
                       str(journal.fact("expires", "")))

    def confirmation(self, plan: CreatePlan) -> Confirmation:
        return Confirmation(f"recovery kube-apiserver from {plan.resource_dir}, etcd "
                            f"{','.join(plan.etcd_urls)}",
                            "Start a recovery kube-apiserver on this master?")


PROCEDURE = RecoveryApiserverProcedure()


def plan(ctx: Context) -> CreatePlan:
    """Everything checked before the first change."""
    paths = ctx.paths
    for existing in (paths.recovery_apiserver_manifest, paths.recovery_apiserver_dir):
        if existing.exists():
            raise PreconditionFailed(
                f"a recovery API server already exists ({paths.shown(existing)})",
                next_step="use it (export KUBECONFIG="
                f"{paths.shown(paths.recovery_kubeconfig)}), or remove it with "
                "`ocp-recovery recovery-apiserver destroy` and create it again")
    manifest = paths.manifests / "kube-apiserver-pod.yaml"
    pod = load_pod(manifest, paths.shown(manifest))
    resource_dir = host_path_of(pod, "resource-dir", paths.shown(manifest))
    local_dir = paths.host(resource_dir)
    for relative, _ in COPIED.values():
        if not (local_dir / relative).is_file():
            raise PreconditionFailed(
                f"{resource_dir}/{relative} is missing: the current kube-apiserver revision "
                "has no etcd client material to copy",
                next_step="check /etc/kubernetes/manifests/kube-apiserver-pod.yaml names a "
                "complete kube-apiserver-pod-N directory")
    images = [c.get("image", "") for c in pod["spec"].get("containers", [])
              if CONTAINER.match(c.get("name", ""))]
    if not images:
        raise PreconditionFailed(f"{paths.shown(manifest)} has no kube-apiserver-N container "
                                 "to take the image from")
    return CreatePlan(new_operation_id(OPERATION), (), resource_dir=resource_dir,
                      image=images[-1], etcd_urls=tuple(ctx.etcd.endpoints),
                      encrypted=(local_dir / ENCRYPTION).is_file())


def _write_recovery_dir(run: StepRun[CreatePlan]) -> None:
    paths = run.ctx.paths
    recovery_dir = paths.recovery_apiserver_dir
    recovery_dir.mkdir(mode=0o755, exist_ok=True)
    source = paths.host(run.plan.resource_dir)
    for name, (relative, mode) in COPIED.items():
        atomic_write(recovery_dir / name, (source / relative).read_bytes(), mode)
    encryption = source / ENCRYPTION
    atomic_write(recovery_dir / "encryption-config",
                 encryption.read_bytes() if encryption.is_file() else EMPTY_ENCRYPTION,
                 0o600)
    pki = LocalPki.create("recovery", SERVER, VALID_DAYS)
    for name, (data, mode) in pki.files.items():
        atomic_write(recovery_dir / name, data, mode)
    atomic_write(recovery_dir / "config.yaml", apiserver_config(BIND, run.plan.etcd_urls), 0o644)
    run.journal.record("expires", pki.expires)


def _remove_recovery_dir(run: StepRun[CreatePlan]) -> None:
    remove_quietly(run.ctx.paths.recovery_apiserver_dir)


def _write_manifest(run: StepRun[CreatePlan]) -> None:
    paths = run.ctx.paths
    atomic_write(paths.recovery_apiserver_manifest,
                 static_pod("kube-apiserver-recovery", "recovery",
                            [apiserver_container("kube-apiserver-recovery", run.plan.image, 7443)],
                            paths.shown(paths.recovery_apiserver_dir)), 0o644)


def _remove_manifest(run: StepRun[CreatePlan]) -> None:
    remove_quietly(run.ctx.paths.recovery_apiserver_manifest)


def _wait_ready(run: StepRun[CreatePlan]) -> None:
    paths, ctx = run.ctx.paths, run.ctx
    client = KubeClient.from_file(paths.recovery_kubeconfig, paths.host,
                                  paths.shown(paths.recovery_kubeconfig),
                                  timeout=ctx.timeouts.dial)
    client.wait_ready(ctx.timeouts.health, next_step=(
        "check the kube-apiserver-recovery container (`crictl ps --name "
        "kube-apiserver-recovery`, `crictl logs <id>`), then `ocp-recovery resume`"))


def destroy(ctx: Context) -> list[str]:
    """Remove the recovery manifest, then the files create made; returns what was left
    behind (files create did not make are never deleted)."""
    paths = ctx.paths
    manifest = paths.recovery_apiserver_manifest
    recovery_dir = paths.recovery_apiserver_dir
    if manifest.exists():
        pod = load_pod(manifest, paths.shown(manifest))
        named = host_path_of(pod, "resource-dir", paths.shown(manifest))
        if paths.host(named) != recovery_dir:
            raise PreconditionFailed(
                f"{paths.shown(manifest)} mounts {named}, not {paths.shown(recovery_dir)}: "
                "it was not made by recovery-apiserver create; nothing was removed",
                next_step="inspect that manifest and remove it by hand if it is yours")
    elif not recovery_dir.exists():
        raise PreconditionFailed("there is no recovery API server on this host",
                                 state="unchanged: nothing to remove",
                                 next_step="nothing to do")
    with host_lock(paths.state_dir, "recovery-apiserver destroy"):
        remove_quietly(manifest)
        wait_until(lambda: not listening(), timeout=ctx.timeouts.pod_stop,
                   what=f"the recovery kube-apiserver on {BIND} to stop",
                   next_step="check `crictl ps --name kube-apiserver-recovery`, then run "
                   "destroy again")
        remove_quietly(*(recovery_dir / name for name in (*COPIED, *MADE)))
        left = sorted(p.name for p in recovery_dir.iterdir()) if recovery_dir.exists() else []
        if recovery_dir.exists() and not left:
            recovery_dir.rmdir()
    _log.info("recovery_apiserver.destroyed", left=left)
    return left


def listening() -> bool:
    """Whether anything accepts connections on the recovery API server's address."""
    host, port = BIND.split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def expiry_note(expires: str) -> str:
    if not expires:
        return ""
    left = dt.datetime.fromisoformat(expires) - dt.datetime.now(dt.UTC)
    return f"its certificates are valid until {expires} ({left.days} days)"
