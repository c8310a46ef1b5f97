"""Guide 3.4 step 4: regenerate the control-plane certificates through the recovery API.

`cluster-kube-apiserver-operator regenerate-certificates` (reference spec §11): every chain
signer -> CA bundle -> targets is brought up to date in the API (toolbox.pki.rotation), the
combined bundles rebuilt, the files the kube-apiserver, kube-controller-manager and
kube-scheduler pods read rewritten (a changed file is kept beside the new one with a readable
`.YYYY-MM-DD-HH-MM-SS` suffix; 4.3's Go layout string produced garbage), and the three
manifests annotated so kubelet restarts the pods. `--dry-run` lists what is due and changes
nothing; a killed run is resumed from the journal.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass

from toolbox import log
from toolbox.context import Context
from toolbox.errors import PreconditionFailed
from toolbox.host.files import atomic_write, move_path
from toolbox.journal import (
    Confirmation,
    Journal,
    Plan,
    Procedure,
    Step,
    StepRun,
    new_operation_id,
)
from toolbox.kube.client import KubeClient, ObjectStore, connect
from toolbox.kube.manifests import annotated, host_path_of, load_pod
from toolbox.pki import rotation
from toolbox.report import Report

_log = log.get(__name__)

OPERATION = "regenerate-certificates"
ANNOTATION = "force-triggered-by-fix-certs-at"
MANIFESTS = ("kube-apiserver-pod.yaml", "kube-controller-manager-pod.yaml",
             "kube-scheduler-pod.yaml")


@dataclass(frozen=True)
class Regenerated:
    changes: list[rotation.Change]
    files: list[str]           # host paths written
    kept: list[str]            # host paths of the old files kept beside them
    manifests: list[str]

    def report(self) -> Report:
        return Report(
            "regenerate_certificates.summary",
            f"regenerated {len(self.changes)} objects in the API; wrote {len(self.files)} files "
            f"({len(self.kept)} old ones kept beside them)",
            {"changed": [[str(c.ref), c.kind, c.reason] for c in self.changes],
             "files": self.files, "kept": self.kept, "manifests": self.manifests},
            details=[*(f"  {c.kind} {c.ref}: {c.reason}" for c in self.changes),
                     "annotated (kubelet restarts them): " + ", ".join(self.manifests)],
            next=["ocp-recovery control-plane force-redeploy"])


def infrastructure_status(client: KubeClient) -> dict[str, str]:
    infra = client.get("Infrastructure", "cluster") or {}
    status = {k: str(v) for k, v in (infra.get("status") or {}).items() if isinstance(v, str)}
    if not status.get("apiServerInternalURI"):
        raise PreconditionFailed(
            "infrastructures.config.openshift.io/cluster has no status.apiServerInternalURI: "
            "the load-balancer certificates' host names are unknown",
            next_step="check the kubeconfig names this cluster's API (`ocp-recovery "
            "--kubeconfig … regenerate-certificates --dry-run`)")
    return status


@dataclass(frozen=True)
class RegeneratePlan(Plan):
    now: str                                  # ISO time: the suffix of kept files, the annotation
    server: str
    kubeconfig: str | None
    infrastructure: dict[str, str]
    due: tuple[tuple[str, str, str], ...]     # (object, kind, reason) found due by the preview


class RegenerateProcedure(Procedure[None, RegeneratePlan, Regenerated]):
    operation = OPERATION
    plan_type = RegeneratePlan

    def plan(self, ctx: Context, request: None = None) -> RegeneratePlan:
        return plan(ctx, connect(ctx), dt.datetime.now(dt.UTC).replace(microsecond=0))

    def steps(self, ctx: Context, plan: RegeneratePlan) -> list[Step[RegeneratePlan]]:
        suffix = _suffix(plan)
        return [
            Step("rotate-in-api", f"regenerate {len(plan.due)} due signers, bundles and "
                 f"certificates in the API at {plan.server}", _rotate_in_api),
            Step("write-pod-files", "write the new certificates to the cert and resource dirs "
                 "of kube-apiserver, kube-controller-manager, kube-scheduler (old kept as "
                 f"*{suffix})", _write_pod_files, _restore_pod_files),
            Step("annotate-manifests", f"annotate the three manifests {ANNOTATION}={plan.now} "
                 "(kubelet restarts the pods)", _annotate_manifests, _restore_manifests),
        ]

    def changes(self, ctx: Context, plan: RegeneratePlan) -> list[str]:
        due = [f"  due: {ref} ({kind}): {reason}" for ref, kind, reason in plan.due]
        return [*due, *super().changes(ctx, plan)]

    def finish(self, ctx: Context, plan: RegeneratePlan, journal: Journal) -> Regenerated:
        changes = [rotation.Change(rotation.Ref(*ref.split("/", 1)), kind, reason)
                   for ref, kind, reason in journal.fact("changes", [])]
        return Regenerated(changes, journal.fact("written", []), journal.fact("kept", []),
                           [f"/etc/kubernetes/manifests/{m}" for m in MANIFESTS])

    def confirmation(self, plan: RegeneratePlan) -> Confirmation:
        return Confirmation(f"regenerate certificates through {plan.server}; {len(plan.due)} "
                            "objects are due",
                            "Regenerate the control-plane certificates and restart the pods?")


PROCEDURE = RegenerateProcedure()


def plan(ctx: Context, client: KubeClient, now: dt.datetime) -> RegeneratePlan:
    """What is due, computed on a copy: the API and the host are only read."""
    for name in MANIFESTS:
        pod = load_pod(ctx.paths.manifests / name, f"/etc/kubernetes/manifests/{name}")
        for _, volume, _, _ in (f for f in rotation.POD_FILES if f[0] == name):
            host_path_of(pod, volume, f"/etc/kubernetes/manifests/{name}")
    status = infrastructure_status(client)
    preview = rotation.MemoryStore(ObjectStore(client))
    changes = rotation.rotate(preview, now, status)
    return RegeneratePlan(new_operation_id(OPERATION), (), now=now.isoformat(),
                          server=client.server, kubeconfig=ctx.kubeconfig,
                          infrastructure=status,
                          due=tuple((str(c.ref), c.kind, c.reason) for c in changes))


def _suffix(plan: RegeneratePlan) -> str:
    return dt.datetime.fromisoformat(plan.now).strftime(".%Y-%m-%d-%H-%M-%S")


def _rotate_in_api(run: StepRun[RegeneratePlan]) -> None:
    changes = rotation.rotate(ObjectStore(connect(run.ctx)),
                              dt.datetime.fromisoformat(run.plan.now), run.plan.infrastructure)
    run.journal.record("changes", [[str(c.ref), c.kind, c.reason] for c in changes])


def _write_pod_files(run: StepRun[RegeneratePlan]) -> None:
    paths, journal, suffix = run.ctx.paths, run.journal, _suffix(run.plan)
    written, kept = list(journal.fact("written", [])), list(journal.fact("kept", []))
    for item in rotation.pod_files(ObjectStore(connect(run.ctx))):
        pod = load_pod(paths.manifests / item.manifest)
        directory = host_path_of(pod, item.volume, item.manifest)
        target = paths.host(f"{directory.rstrip('/')}/{item.relative}")
        mode = 0o600 if item.secret else 0o644
        if target.is_file():
            if target.read_bytes() == item.data:
                continue
            mode = target.stat().st_mode & 0o777
            backup = target.with_name(target.name + suffix)
            if not backup.exists():
                move_path(target, backup)
                kept.append(paths.shown(backup))
                journal.record("kept", kept)
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        atomic_write(target, item.data, mode)
        written.append(paths.shown(target))
        journal.record("written", written)


def _restore_pod_files(run: StepRun[RegeneratePlan]) -> None:
    suffix = _suffix(run.plan)
    for shown in run.journal.fact("kept", []):
        backup = run.ctx.paths.host(shown)
        if backup.exists():
            move_path(backup, backup.with_name(backup.name.removesuffix(suffix)))


def _annotate_manifests(run: StepRun[RegeneratePlan]) -> None:
    paths, journal = run.ctx.paths, run.journal
    originals = dict(journal.fact("manifests", {}))
    for name in MANIFESTS:
        path = paths.manifests / name
        original = path.read_bytes()
        originals.setdefault(name, base64.b64encode(original).decode())
        journal.record("manifests", originals)
        pod = load_pod(path)
        if (pod.get("metadata", {}).get("annotations") or {}).get(ANNOTATION) == run.plan.now:
            continue
        atomic_write(path, annotated(pod, ANNOTATION, run.plan.now),
                     path.stat().st_mode & 0o777)


def _restore_manifests(run: StepRun[RegeneratePlan]) -> None:
    for name, data in run.journal.fact("manifests", {}).items():
        path = run.ctx.paths.manifests / name
        atomic_write(path, base64.b64decode(data), path.stat().st_mode & 0o777)
