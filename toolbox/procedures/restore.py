"""Guide 3.2 step 1 and 3.3: restore etcd from a backup on this master.

`etcd-snapshot-restore.sh BACKUP INITIAL_CLUSTER`, made safe: every input is checked before
the first change (snapshot integrity, archive safety, INITIAL_CLUSTER and this host's entry,
the restore tool, free space, no other operation in flight); each step is journaled with its
undo; the old data dir, the manifests and the replaced kube-apiserver revisions are moved
into the state dir, never deleted; exactly the manifests moved out are moved back.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from toolbox import log
from toolbox.context import Context
from toolbox.errors import EtcdUnavailable, InvalidInput, PreconditionFailed
from toolbox.etcd.cluster import (
    ClusterEntry,
    check_reaches_here,
    find_local_entry,
    parse_env_file,
    parse_initial_cluster,
    resolve_entries,
)
from toolbox.etcd.health import live_cluster
from toolbox.etcd.snapshot import RestoreTool, SnapshotReport, bump_for, verify_file
from toolbox.host.archive import extract_legacy_snapshot, extract_revision, inspect_archive
from toolbox.host.backups import BackupInput, legacy_snapshot_copy, resolve_backup_input
from toolbox.host.files import (
    ensure_private_dir,
    move_path,
    partial_path,
    remove_quietly,
    require_free_space,
    same_filesystem,
    tree_bytes,
)
from toolbox.host.node import KUBELET_CLIENT_CERT, member_name, node_name
from toolbox.host.paths import revision_number
from toolbox.host.runtime import Runtime, wait_until
from toolbox.journal import IN_FLIGHT, Journal, Step, describe, execute, new_operation_id

if TYPE_CHECKING:
    from toolbox.etcd.client import Member

_log = log.get(__name__)

OPERATION = "restore"
ETCD_POD = "etcd-member"
SPACE_MARGIN = 1.10
SPACE_FLOOR = 64 << 20


@dataclass(frozen=True)
class RestoreRequest:
    backup: str                      # host path: directory, snapshot_*.db or legacy .tar.gz
    initial_cluster: str
    name: str | None = None          # pick this host's entry by name instead of address
    skip_hash_check: bool = False
    bump_revision: bool = True
    # Guide 3.3: restore although this master is a healthy member of a cluster with quorum.
    rewind_healthy_cluster: bool = False
    wait: bool = True                # wait, as the last step, until the member serves


@dataclass
class RestoreResult:
    plan: dict[str, Any]
    members: list[Member] = field(default_factory=list)
    healthy: bool | None = None      # None: not waited for
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


# ---- preflight: every check, no change -----------------------------------------------------
def plan(ctx: Context, request: RestoreRequest) -> dict[str, Any]:
    """Check everything and return the plan the steps follow (stored in the journal)."""
    paths = ctx.paths
    source = paths.host(request.backup)
    given = resolve_backup_input(source, request.backup)
    entries = parse_initial_cluster(request.initial_cluster)
    local, local_warnings = _local_entry(ctx, entries, request.name)
    if not paths.manifests.is_dir():
        raise PreconditionFailed(f"{paths.shown(paths.manifests)} does not exist: this is "
                                 "not a master's root", next_step="check --host-root")
    # The restore tool's --help (0.1 s, a process) runs while the snapshot is hashed.
    with ThreadPoolExecutor(max_workers=1) as pool:
        tool_probe = pool.submit(_restore_tool, ctx)
        revision, legacy_bytes, report = _check_backup(ctx, given, request)
        tool = tool_probe.result()
    snapshot_bytes = report.size if report else (legacy_bytes or 0)
    operation_id = new_operation_id(OPERATION)
    stash = paths.state_dir / operation_id
    data_dir = paths.etcd_data_dir
    needed = int(snapshot_bytes * SPACE_MARGIN) + SPACE_FLOOR
    require_free_space(_existing(data_dir.parent), needed, "the restored data dir")
    if given.kind == "legacy":
        require_free_space(_existing(paths.state_dir), needed, "the extracted snapshot")
    if data_dir.exists() and not same_filesystem(data_dir, paths.state_dir):
        require_free_space(_existing(paths.state_dir), tree_bytes(data_dir) + SPACE_FLOOR,
                           f"the copy of {paths.shown(data_dir)} set aside")
    previous = Journal.load(paths.state_dir)
    if previous is not None and previous.status in IN_FLIGHT:
        raise PreconditionFailed(
            f"a `{previous.operation}` ({previous.data['id']}, pid {previous.data['pid']}) is "
            f"in flight on this host ({previous.status})",
            next_step="ocp-recovery status, then ocp-recovery resume or ocp-recovery rollback")
    raft_index = (given.manifest or {}).get("etcd", {}).get("raft_index")
    warnings = _guard_live_cluster(ctx, request, len(entries), report)
    warnings += local_warnings
    if previous is not None and previous.status == "done":
        warnings.append(
            f"the last operation here, {previous.data['id']}, is done and can still be rolled "
            "back; after this restore `ocp-recovery rollback` undoes only this one (what it "
            f"set aside stays in {paths.shown(paths.state_dir)})")
    live = _live_kube_apiserver_revision(ctx)
    if revision is not None and live is not None and live > revision:
        warnings.append(
            f"the running kube-apiserver-pod.yaml uses revision {live}, newer than the "
            f"archived {revision}; as in 4.3, revisions from {revision} up are set aside and "
            f"{revision} is restored, so the kube-apiserver pod cannot start until the "
            "operator rolls out a new revision: if it does not within 15 minutes, copy "
            f"kube-apiserver-pod.yaml from kube-apiserver-pod-{revision} into "
            "/etc/kubernetes/manifests")
    return {
        "id": operation_id,
        "wait": request.wait,
        "warnings": warnings,
        "backup": request.backup,
        "kind": given.kind,
        "snapshot": paths.shown(given.snapshot) if given.snapshot else None,
        "archive": paths.shown(given.archive) if given.archive else None,
        "revision": revision,
        "snapshot_revision": report.revision if report else None,
        # The trailer was verified above (or the db has none): no second hash in etcdutl.
        "skip_hash_check": True,
        "name": local.name,
        "peer_url": local.peer_url,
        "initial_cluster": ",".join(f"{e.name}={e.peer_url}" for e in entries),
        "members": len(entries),
        "stash": paths.shown(stash),
        "tool": {"path": tool.path, "flavor": tool.flavor, "can_bump": tool.can_bump},
        "bump": bump_for(raft_index) if (request.bump_revision and tool.can_bump) else None,
    }


def _guard_live_cluster(ctx: Context, request: RestoreRequest, members: int,
                        report: SnapshotReport | None) -> list[str]:
    """Refuse to restore a started, healthy member of a cluster that has quorum. With fewer
    members in --initial-cluster than that cluster has, never: the members left out keep
    quorum and serve on, a second cluster beside the restored one (two leaders). Restoring
    every member (guide 3.3, or a one-member cluster again) rewinds a healthy cluster on
    purpose: only with `rewind_healthy_cluster`, and the cost is said."""
    live = live_cluster(ctx)
    if live is None:
        return []
    found = (f"etcd on this master is a started, healthy member ({live.local_name}) of a "
             f"cluster with quorum ({live.healthy} of {live.members} members healthy, leader "
             f"{live.leader_name})")
    back_to = f"revision {report.revision}" if report else "the backup"
    if members < live.members:
        raise PreconditionFailed(
            f"{found}; restoring it as one of {members} member(s) would split that cluster: "
            f"the {live.members - members} member(s) left out of --initial-cluster keep "
            "quorum and serve on beside the restored one",
            next_step="to replace a lost master use `ocp-recovery member remove` and "
            "`member add`/`member recover` (guide chapter 2); to rewind the whole cluster "
            f"(guide 3.3) list all {live.members} masters in --initial-cluster, restore each "
            "with the same backup, and add --rewind-healthy-cluster")
    if not request.rewind_healthy_cluster:
        raise PreconditionFailed(
            f"{found}; restoring it takes every object of that cluster back to {back_to}",
            next_step="if that is what you want (guide 3.3), add --rewind-healthy-cluster and "
            "restore every master of --initial-cluster with the same backup")
    return [f"rewinding a healthy cluster ({live.healthy} of {live.members} members healthy): "
            f"every object goes back in time to {back_to}, and every master of "
            "--initial-cluster must be restored with this same backup"]


def _live_kube_apiserver_revision(ctx: Context) -> int | None:
    manifest = ctx.paths.manifests / "kube-apiserver-pod.yaml"
    try:
        pod = yaml.safe_load(manifest.read_text())
        for volume in pod["spec"]["volumes"]:
            if volume.get("name") == "resource-dir":
                return revision_number(Path(volume["hostPath"]["path"]))
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    return None


def _check_backup(ctx: Context, given: BackupInput, request: RestoreRequest
                  ) -> tuple[int | None, int | None, SnapshotReport | None]:
    """The archive's revision and the snapshot's integrity, before anything changes:
    (archived kube-apiserver revision, bytes of a 4.3.0 tarball's snapshot, the report)."""
    revision = None
    legacy_bytes = None
    if given.archive is not None:
        contents = inspect_archive(given.archive)
        revision = contents.revision
        legacy_bytes = contents.legacy_snapshot_bytes
        if given.kind == "legacy" and legacy_bytes is None:
            raise InvalidInput(f"{request.backup} holds no snapshot.db",
                               next_step="give the backup directory or a snapshot_*.db")
        if given.kind == "set" and revision is None:
            raise InvalidInput(f"{given.archive.name} holds no kube-apiserver-pod-N directory")
    report = None
    if given.kind == "legacy" and given.archive is not None and legacy_bytes is not None:
        # Checked now, from a copy nothing lists, not first in the journaled extract step.
        with legacy_snapshot_copy(given.archive, legacy_bytes,
                                  ctx.paths.state_dir) as snapshot:
            report = verify_file(snapshot, skip_hash_check=request.skip_hash_check,
                                 shown=f"snapshot.db in {given.archive.name}")
    if given.snapshot is not None:
        report = verify_file(given.snapshot, skip_hash_check=request.skip_hash_check)
        recorded = (given.manifest or {}).get("snapshot", {}).get("db_sha256")
        if recorded and report.db_sha256 and recorded != report.db_sha256:
            raise InvalidInput(f"{given.snapshot.name} does not match its backup manifest "
                               "(sha256 differs)", next_step="use another backup")
    return revision, legacy_bytes, report


def _local_entry(ctx: Context, entries: list[ClusterEntry],
                 name: str | None) -> tuple[ClusterEntry, list[str]]:
    """This host's entry, and warnings. Every host is resolved first: etcd's restore tool
    resolves them all, and a name that does not resolve would fail only there, part-way."""
    resolved = resolve_entries(entries, ctx.timeouts.dial)
    if name:
        local = next((e for e in entries if e.name == name), None)
        if local is None:
            raise InvalidInput(f"--name {name} is not in INITIAL_CLUSTER "
                               f"({', '.join(e.name for e in entries)})")
    else:
        env_file = ctx.paths.etcd_env_file
        if not env_file.is_file() or not env_file.read_text().strip():
            raise PreconditionFailed(
                f"{ctx.paths.shown(env_file)} is missing, so this host's etcd IP and DNS "
                "name are unknown",
                next_step="pass --name with this master's INITIAL_CLUSTER entry")
        env = parse_env_file(env_file.read_text())
        ip, dns_name = env.get("ETCD_IPV4_ADDRESS") or "", env.get("ETCD_DNS_NAME") or ""
        local = find_local_entry(entries, {ip, dns_name}, resolved)
        if ip:
            check_reaches_here(f"INITIAL_CLUSTER entry {local.name}={local.peer_url}",
                               local.host, resolved[local], ip)
    # The pod is etcd-member-<node>, its member name too: another name is a member etcd
    # never starts (4.3 dropped ETCD_NAME from the env file for the pod's own).
    node = node_name(ctx.paths)
    if node is None:
        return local, [f"this host's node name is unknown (no {KUBELET_CLIENT_CERT}): "
                       f"check that {local.name} is etcd-member-<node name>"]
    if local.name != member_name(node):
        raise InvalidInput(
            f"this host's INITIAL_CLUSTER entry is named {local.name!r}, but node {node}'s "
            f"etcd member is {member_name(node)!r}",
            next_step=f"use {member_name(node)}={local.peer_url} (the same on every master)")
    return local, []


def _restore_tool(ctx: Context) -> RestoreTool:
    etcdutl = ctx.executor.find_tool("etcdutl")
    if etcdutl:
        usage = ctx.executor.run_tool([etcdutl, "snapshot", "restore", "--help"]).stdout
        return RestoreTool(etcdutl, "etcdutl",
                           "--bump-revision" in usage and "--mark-compacted" in usage)
    etcdctl = ctx.executor.find_tool("etcdctl")
    if etcdctl:
        return RestoreTool(etcdctl, "etcdctl", can_bump=False)
    raise PreconditionFailed("neither etcdutl nor etcdctl is on PATH",
                             next_step="run the ocp-recovery image (it carries both) or "
                             "install etcd's tools")


def _existing(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


# ---- the steps -----------------------------------------------------------------------------
def steps(ctx: Context, journal: Journal) -> list[Step]:
    plan = journal.plan
    paths = ctx.paths
    runtime = Runtime(ctx.executor)
    stash = paths.host(plan["stash"])
    data_dir = paths.etcd_data_dir
    set_aside_data = stash / "var-lib-etcd"
    manifests_stash = stash / "manifests"
    revisions_stash = stash / "static-pod-resources"
    revision = plan["revision"]
    snapshot = paths.host(plan["snapshot"]) if plan["snapshot"] else stash / "snapshot.db"
    tool = RestoreTool(**plan["tool"])

    def extract_snapshot() -> None:
        ensure_private_dir(stash)
        if not snapshot.exists():
            extract_legacy_snapshot(paths.host(plan["archive"]), snapshot)
        verify_file(snapshot)

    def stop_static_pods() -> None:
        ensure_private_dir(manifests_stash)
        moved = journal.fact("moved_manifests")
        if moved is None:
            moved = sorted(p.name for p in paths.manifests.iterdir() if p.is_file())
            journal.record("moved_manifests", moved)
        for name in moved:
            move_path(paths.manifests / name, manifests_stash / name)

    def start_static_pods() -> None:
        for name in journal.fact("moved_manifests", []):
            move_path(manifests_stash / name, paths.manifests / name)

    def stop_kubelet() -> None:
        if journal.fact("kubelet_was_active") is None:
            journal.record("kubelet_was_active", runtime.kubelet_active())
        runtime.stop_kubelet()

    def stop_control_plane() -> None:
        """Undo of a started control plane: nothing may run on the data dir while the
        steps before put the old one back."""
        stop_static_pods()
        runtime.wait_pod_stopped(ETCD_POD, ctx.timeouts.pod_stop)
        runtime.stop_kubelet()
        runtime.stop_all_containers(ctx.timeouts.pod_stop)

    def restart_kubelet_if_it_ran() -> None:
        if journal.fact("kubelet_was_active", True):
            runtime.start_kubelet()

    def set_aside_data_dir() -> None:
        if set_aside_data.exists():
            # A cross-filesystem move killed after its copy was renamed into place: the
            # copy is whole, the source is the leftover.
            remove_quietly(data_dir)
        elif data_dir.exists():
            move_path(data_dir, set_aside_data)

    def data_dir_is_ours() -> bool:
        """True when what is at /var/lib/etcd was written by this restore."""
        return set_aside_data.exists() or not journal.fact("had_data_dir", True)

    def put_back_data_dir() -> None:
        if data_dir_is_ours():
            remove_quietly(data_dir, partial_path(data_dir))
        if set_aside_data.exists():
            move_path(set_aside_data, data_dir)

    def set_aside_revisions() -> None:
        moved = journal.fact("moved_revisions")
        if moved is None:
            moved = [d.name for d in paths.kube_apiserver_revisions()
                     if (revision_number(d) or 0) >= revision]
            journal.record("moved_revisions", moved)
        for name in moved:
            move_path(paths.static_pod_resources / name, revisions_stash / name)

    def put_back_revisions() -> None:
        for name in journal.fact("moved_revisions", []):
            remove_quietly(paths.static_pod_resources / name)
            move_path(revisions_stash / name, paths.static_pod_resources / name)

    def restore_data_dir() -> None:
        if data_dir.exists():
            return  # the rename below is the last act of a finished restore
        staging = partial_path(data_dir)
        remove_quietly(staging)
        size = snapshot.stat().st_size
        ctx.executor.run_tool(
            tool.argv(snapshot, staging, name=plan["name"], initial_cluster=plan[
                "initial_cluster"], peer_url=plan["peer_url"],
                skip_hash_check=plan["skip_hash_check"], bump=plan["bump"]),
            timeout=ctx.timeouts.command + size / (20 << 20))
        staging.chmod(0o700)
        move_path(staging, data_dir)

    def remove_restored_data_dir() -> None:
        remove_quietly(partial_path(data_dir))
        if data_dir_is_ours():
            remove_quietly(data_dir)

    target_revision = paths.static_pod_resources / f"kube-apiserver-pod-{revision}"

    def extract_static_resources() -> None:
        if target_revision.exists():
            return
        staging = paths.static_pod_resources / f".kube-apiserver-pod-{revision}.partial"
        remove_quietly(staging)
        extract_revision(paths.host(plan["archive"]), revision, staging)
        move_path(staging, target_revision)

    def remove_extracted_static_resources() -> None:
        # Only called once this step ran; the original revision, if any, was set aside.
        remove_quietly(paths.static_pod_resources / f".kube-apiserver-pod-{revision}.partial",
                       target_revision)

    if journal.fact("had_data_dir") is None:
        journal.record("had_data_dir", data_dir.exists())
    shown = paths.shown
    result: list[Step] = []
    if plan["kind"] == "legacy":
        result.append(Step("extract-legacy-snapshot",
                           f"extract snapshot.db from {plan['archive']} into {plan['stash']}",
                           extract_snapshot, lambda: remove_quietly(snapshot)))
    result += [
        Step("stop-static-pods", f"move every manifest of {shown(paths.manifests)} to "
             f"{plan['stash']}/manifests", stop_static_pods, start_static_pods),
        Step("wait-etcd-pod-stopped", f"wait (<= {ctx.timeouts.pod_stop:.0f}s) until no "
             f"{ETCD_POD} pod is Ready",
             lambda: runtime.wait_pod_stopped(ETCD_POD, ctx.timeouts.pod_stop)),
        Step("stop-kubelet", "systemctl stop kubelet.service", stop_kubelet,
             restart_kubelet_if_it_ran),
        Step("stop-all-containers", f"crictl stop every running container (<= "
             f"{ctx.timeouts.pod_stop:.0f}s)",
             lambda: runtime.stop_all_containers(ctx.timeouts.pod_stop)),
        Step("set-aside-data-dir", f"move {shown(data_dir)} to {plan['stash']}/var-lib-etcd",
             set_aside_data_dir, put_back_data_dir),
    ]
    if revision is not None:
        result.append(Step("set-aside-revisions",
                           f"move kube-apiserver-pod-{revision} and newer revisions to "
                           f"{plan['stash']}/static-pod-resources",
                           set_aside_revisions, put_back_revisions))
    result.append(Step("restore-data-dir",
                       f"{tool.flavor} snapshot restore into {shown(data_dir)} as member "
                       f"{plan['name']} of {plan['members']}",
                       restore_data_dir, remove_restored_data_dir))
    if revision is not None:
        result.append(Step("extract-static-resources",
                           f"unpack kube-apiserver-pod-{revision} from {plan['archive']}",
                           extract_static_resources, remove_extracted_static_resources))
    result += [
        Step("start-static-pods", "move the manifests moved out back into "
             f"{shown(paths.manifests)}", start_static_pods, stop_static_pods),
        Step("start-kubelet", "systemctl daemon-reload; systemctl start kubelet.service",
             runtime.start_kubelet, stop_control_plane),
    ]
    if plan.get("wait", True):
        # A step, so the host lock and `status` cover the wait, and `resume` waits again.
        result.append(Step("wait-healthy", f"wait (<= {ctx.timeouts.health:.0f}s) until "
                           f"member {plan['name']} serves with a leader",
                           lambda: wait_healthy(ctx, plan)))
    return result


# ---- after the steps -----------------------------------------------------------------------
def wait_healthy(ctx: Context, plan: dict[str, Any]) -> list[Member]:
    """Wait until the restored local member answers with a leader; return the members."""
    # gRPC (0.15 s to import) is loaded here, while etcd starts, not before the first step.
    from toolbox.etcd.client import EtcdClient, resolve_tls

    members: list[Member] = []

    def healthy() -> bool:
        try:
            with EtcdClient.connect(ctx, resolve_tls(ctx)) as client:
                if not client.status().leader:
                    return False
                members[:] = client.members()
                return True
        except EtcdUnavailable:
            return False

    alone = plan["members"] == 1
    wait_until(healthy, timeout=ctx.timeouts.health,
               what=f"the restored member {plan['name']} to serve with a leader",
               next_step="check `crictl ps --name etcd-member` and its log on the host"
               if alone else "restore the other masters with the same backup and "
               "--initial-cluster: the member serves once a majority runs")
    return members


def next_steps(plan: dict[str, Any]) -> list[str]:
    if plan["members"] == 1:
        return [
            "this master now runs a one-member etcd with the backup's data (guide 3.2 "
            "step 1 done)",
            "next: recreate the lost masters, then add each back (guide 3.2 steps 2-5)",
            "the API services restart on their own; this can take up to 15 minutes",
        ]
    return [
        f"run the same restore on every master of INITIAL_CLUSTER ({plan['members']} "
        "members), close together: the cluster forms when a majority is restored",
        "the API services restart on their own; this can take up to 15 minutes",
    ]


def run(ctx: Context, request: RestoreRequest, *,
        checked_plan: dict[str, Any] | None = None) -> RestoreResult:
    """Restore; `checked_plan` is the plan a --dry-run or confirmation just made (the
    checks are not repeated; the journal refuses if another operation began since)."""
    started = time.monotonic()
    the_plan = checked_plan or plan(ctx, request)
    execute(ctx.paths.state_dir, OPERATION, the_plan, lambda j: steps(ctx, j))
    return finish(ctx, the_plan, started=started)


def dry_run(ctx: Context, request: RestoreRequest) -> tuple[dict[str, Any], list[str]]:
    """The plan and every host change, in order; nothing is changed or written."""
    the_plan = plan(ctx, request)
    return the_plan, describe(steps(ctx, Journal.in_memory(the_plan)))


def finish(ctx: Context, the_plan: dict[str, Any], *,
           started: float | None = None) -> RestoreResult:
    """The result of a finished run (its last step waited for health, unless --no-wait)."""
    result = RestoreResult(the_plan)
    result.warnings += the_plan.get("warnings", [])
    if the_plan["bump"] is None:
        why = ("--no-bump-revision was given" if the_plan["tool"]["can_bump"] else
               f"{the_plan['tool']['flavor']} cannot bump it (--bump-revision needs etcd "
               "3.5.10+)")
        result.warnings.append(
            f"the revision was not bumped ({why}): etcd's revision goes back to the "
            "backup's, so clients holding a newer resourceVersion (kube-apiserver watch "
            "caches, informers) must re-list; restart them if they report 'too old resource "
            "version'")
    if the_plan.get("wait", True):
        result.members = wait_healthy(ctx, the_plan)  # healthy already: one check
        result.healthy = True
    if started is not None:
        result.seconds = time.monotonic() - started
    return result
