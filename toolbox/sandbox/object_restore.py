"""The object-restore drill: a namespace deleted the way a user deletes it, and put back from
a backup with `objects restore`, on a 1-master sandbox with a real kube-apiserver and
kube-controller-manager (whose namespace controller empties and removes it)."""

from __future__ import annotations

import base64
from typing import Any

from toolbox.context import Context
from toolbox.journal import plan_and_execute
from toolbox.kube.client import KubeClient
from toolbox.objects.backup import Selection
from toolbox.procedures import backup, objects_restore, snapshot_list
from toolbox.sandbox.cluster import Sandbox
from toolbox.sandbox.drill_report import DrillReport, check
from toolbox.waiting import wait_until

NAMESPACE = "drill-shop"
GONE_TIMEOUT = 120.0   # the namespace controller deletes the contents, then the namespace
BACKUP_DIR = "/home/core/backup"


def run(sandbox: Sandbox, ctx: Context, report: DrillReport, count: int) -> None:
    api = KubeClient.from_file(sandbox.admin_kubeconfig, timeout=15)
    with report.phase(f"create namespace {NAMESPACE}: {count} ConfigMaps, a Secret"):
        api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        for i in range(count):
            api.create(_config_map(i))
        api.create({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": {"name": "db", "namespace": NAMESPACE},
                    "data": {"password": base64.b64encode(b"drill-secret").decode()}})
    with report.phase("backup on master-0"):
        backup.run(ctx, backup.BackupRequest(BACKUP_DIR, progress=False))
    with report.phase(f"delete namespace {NAMESPACE} (API); wait until it is gone"):
        api.delete("Namespace", NAMESPACE)
        wait_until(lambda: api.get("Namespace", NAMESPACE) is None, timeout=GONE_TIMEOUT,
                   what=f"namespace {NAMESPACE} to be deleted by the namespace controller",
                   next_step=f"read {sandbox.master_dir(0)}/logs/*kube-controller-manager*")
    selection = Selection(namespace=NAMESPACE)
    with report.phase("snapshot ls --namespace (offline)"):
        listed = snapshot_list.run(ctx, BACKUP_DIR, selection)
    with report.phase("objects restore --namespace"):
        restored = plan_and_execute(ctx, objects_restore.PROCEDURE,
                                    objects_restore.RestoreRequest(BACKUP_DIR, selection))
    with report.phase("read every object back through the API"):
        maps = {m["metadata"]["name"]: m.get("data") for m in api.list("ConfigMap", NAMESPACE)}
        secret = api.get("Secret", "db", NAMESPACE)
    with report.phase("objects restore again (changes nothing)"):
        again = objects_restore.PROCEDURE.plan(
            ctx, objects_restore.RestoreRequest(BACKUP_DIR, selection))
    want = {_name(i): _data(i) for i in range(count)}
    check(all(maps.get(name) == data for name, data in want.items()),
          f"{sum(maps.get(n) == d for n, d in want.items())} of {count} ConfigMaps came back "
          "with their data")
    check(secret is not None and base64.b64decode(secret["data"]["password"]) ==
          b"drill-secret", "the Secret did not come back with its data")
    check(not again.create and not again.replace, f"a second run would write "
          f"{len(again.create)} object(s)")
    report.facts += [
        f"{len(listed.keys)} keys of {NAMESPACE} listed from the snapshot alone",
        f"{restored.created} objects created with create-only transactions, the namespace "
        "first; the API serves them, the Secret decrypted with its aescbc key",
        f"a second run finds all {again.unchanged} as in the backup and writes nothing",
    ]


def _config_map(i: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": _name(i), "namespace": NAMESPACE,
                         "labels": {"drill": "object-restore"}},
            "data": _data(i)}


def _name(i: int) -> str:
    return f"settings-{i:04d}"


def _data(i: int) -> dict[str, str]:
    return {"index": str(i), "payload": f"value-{i}-" + "x" * 200}
