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
from typing import Any

from toolbox import log
from toolbox.context import Context
from toolbox.errors import PreconditionFailed
from toolbox.host.files import atomic_write, move_path
from toolbox.journal import Journal, Step, describe, execute
from toolbox.kube.client import KubeClient, ObjectStore, connect, path_of
from toolbox.kube.manifests import annotated, host_path_of, load_pod
from toolbox.pki import rotation

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


def infrastructure_status(client: KubeClient) -> dict[str, str]:
    infra = client.get(path_of("Infrastructure", "cluster")) or {}
    status = {k: str(v) for k, v in (infra.get("status") or {}).items() if isinstance(v, str)}
    if not status.get("apiServerInternalURI"):
        raise PreconditionFailed(
            "infrastructures.config.openshift.io/cluster has no status.apiServerInternalURI: "
            "the load-balancer certificates' host names are unknown",
            next_step="check the kubeconfig names this cluster's API (`ocp-recovery "
            "--kubeconfig … regenerate-certificates --dry-run`)")
    return status


def plan(ctx: Context, client: KubeClient, now: dt.datetime) -> dict[str, Any]:
    """What is due, computed on a copy: the API and the host are only read."""
    for name in MANIFESTS:
        pod = load_pod(ctx.paths.manifests / name, f"/etc/kubernetes/manifests/{name}")
        for _, volume, _, _ in (f for f in rotation.POD_FILES if f[0] == name):
            host_path_of(pod, volume, f"/etc/kubernetes/manifests/{name}")
    status = infrastructure_status(client)
    preview = rotation.MemoryStore(ObjectStore(client))
    changes = rotation.rotate(preview, now, status)
    return {"now": now.isoformat(), "server": client.config.server,
            "kubeconfig": ctx.kubeconfig, "infrastructure": status,
            "due": [[str(c.ref), c.kind, c.reason] for c in changes]}


def steps(ctx: Context, journal: Journal) -> list[Step]:
    the_plan = journal.plan
    now = dt.datetime.fromisoformat(the_plan["now"])
    suffix = now.strftime(".%Y-%m-%d-%H-%M-%S")
    paths = ctx.paths

    def client() -> KubeClient:
        return connect(ctx)

    def rotate_in_api() -> None:
        changes = rotation.rotate(ObjectStore(client()), now, the_plan["infrastructure"])
        journal.record("changes", [[str(c.ref), c.kind, c.reason] for c in changes])

    def write_pod_files() -> None:
        written, kept = list(journal.fact("written", [])), list(journal.fact("kept", []))
        for item in rotation.pod_files(ObjectStore(client())):
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

    def restore_pod_files() -> None:
        for shown in journal.fact("kept", []):
            backup = paths.host(shown)
            if backup.exists():
                move_path(backup, backup.with_name(backup.name.removesuffix(suffix)))

    def annotate_manifests() -> None:
        originals = dict(journal.fact("manifests", {}))
        for name in MANIFESTS:
            path = paths.manifests / name
            original = path.read_bytes()
            originals.setdefault(name, base64.b64encode(original).decode())
            journal.record("manifests", originals)
            pod = load_pod(path)
            if (pod.get("metadata", {}).get("annotations") or {}).get(ANNOTATION) == \
                    the_plan["now"]:
                continue
            atomic_write(path, annotated(pod, ANNOTATION, the_plan["now"]),
                         path.stat().st_mode & 0o777)

    def restore_manifests() -> None:
        for name, data in journal.fact("manifests", {}).items():
            path = paths.manifests / name
            atomic_write(path, base64.b64decode(data), path.stat().st_mode & 0o777)

    due = len(the_plan["due"])
    return [
        Step("rotate-in-api", f"regenerate {due} due signers, bundles and certificates in "
             f"the API at {the_plan['server']}", rotate_in_api),
        Step("write-pod-files", "write the new certificates to the cert and resource dirs of "
             f"kube-apiserver, kube-controller-manager, kube-scheduler (old kept as *{suffix})",
             write_pod_files, restore_pod_files),
        Step("annotate-manifests", f"annotate the three manifests {ANNOTATION}="
             f"{the_plan['now']} (kubelet restarts the pods)", annotate_manifests,
             restore_manifests),
    ]


def dry_run(ctx: Context, now: dt.datetime | None = None
            ) -> tuple[dict[str, Any], list[str]]:
    the_plan = plan(ctx, connect(ctx), now or dt.datetime.now(dt.UTC).replace(microsecond=0))
    return the_plan, describe(steps(ctx, Journal.in_memory(the_plan)))


def run(ctx: Context, checked_plan: dict[str, Any]) -> Regenerated:
    the_plan = checked_plan
    execute(ctx.paths.state_dir, OPERATION, the_plan, lambda j: steps(ctx, j))
    return finish(ctx, the_plan)


def finish(ctx: Context, the_plan: dict[str, Any]) -> Regenerated:
    journal = Journal.load(ctx.paths.state_dir)
    facts = journal.data.get("facts", {}) if journal else {}
    changes = [rotation.Change(rotation.Ref(*ref.split("/", 1)), kind, reason)
               for ref, kind, reason in facts.get("changes", [])]
    return Regenerated(changes, facts.get("written", []), facts.get("kept", []),
                       [f"/etc/kubernetes/manifests/{m}" for m in MANIFESTS])
