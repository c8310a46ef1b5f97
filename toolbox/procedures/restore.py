"""Guide 3.2 step 1 and 3.3: restore etcd from a backup on this master.

`etcd-snapshot-restore.sh BACKUP INITIAL_CLUSTER`, made safe: every input is checked before
the first change (snapshot integrity, archive safety, INITIAL_CLUSTER and this host's entry,
the restore tool, free space, no other operation in flight); each step is journaled with its
undo; the old data dir, the manifests and the replaced kube-apiserver revisions are moved
into the state dir, never deleted; exactly the manifests moved out are moved back.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from toolbox.context import Context, longer_health_wait
from toolbox.errors import EtcdUnavailable, InvalidInput, PreconditionFailed
from toolbox.etcd.cluster import (
    ClusterEntry,
    check_reaches_here,
    find_local_entry,
    parse_env_file,
    parse_initial_cluster,
    render_initial_cluster,
    resolve_entries,
)
from toolbox.etcd.health import listening, live_cluster
from toolbox.etcd.snapshot import RestoreTool, SnapshotReport, bump_for, verify_file
from toolbox.host.archive import extract_legacy_snapshot, extract_revision, inspect_archive
from toolbox.host.backups import BackupInput, legacy_snapshot_copy, resolve_backup_input
from toolbox.host.files import (
    ensure_private_dir,
    move_path,
    nearest_existing,
    partial_path,
    remove_quietly,
    same_filesystem,
    tree_bytes,
)
from toolbox.host.node import KUBELET_CLIENT_CERT, member_name, node_name
from toolbox.host.paths import revision_number
from toolbox.host.runtime import Runtime
from toolbox.journal import (
    IN_FLIGHT,
    Confirmation,
    Journal,
    Plan,
    Procedure,
    Step,
    StepRun,
    new_operation_id,
)
from toolbox.procedures import shared_steps
from toolbox.report import Report
from toolbox.waiting import wait_until

if TYPE_CHECKING:
    from toolbox.etcd.client import Member

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


@dataclass(frozen=True)
class RestorePlan(Plan):
    wait: bool                       # the last step waits until the member serves
    backup: str                      # as given
    kind: str                        # "set", "db" or "legacy" (see BackupInput)
    snapshot: str | None             # shown host path; None: a 4.3.0 tarball's, extracted
    archive: str | None              # the static_kuberesources (or 4.3.0) archive
    revision: int | None             # the archived kube-apiserver-pod-N
    snapshot_revision: int | None    # etcd's revision in the snapshot
    skip_hash_check: bool
    name: str                        # this master's INITIAL_CLUSTER entry
    peer_url: str
    initial_cluster: str
    members: int                     # entries in INITIAL_CLUSTER
    stash: str                       # shown host path: where everything moved aside goes
    tool: RestoreTool
    bump: int | None                 # --bump-revision; None: not bumped
    snapshot_bytes: int = 0          # what the waits scale with (0 in journals before it)


@dataclass(frozen=True)
class RestoreResult:
    plan: RestorePlan
    members: tuple[Member, ...]      # as the wait saw them; () when not waited for
    healthy: bool | None             # None: not waited for
    warnings: tuple[str, ...]

    def report(self) -> Report:
        plan = self.plan
        state = "healthy" if self.healthy else "not waited for (--no-wait)"
        details = [f"  member {m.hex_id} {m.name or '(not started)'} {','.join(m.peer_urls)}"
                   for m in self.members]
        next_steps: list[str] = []
        if plan.members == 1:
            details.append("this master now runs a one-member etcd with the backup's data "
                           "(guide 3.2 step 1 done)")
            next_steps.append("recreate the lost masters, then add each back (guide 3.2 steps "
                              "2-5)")
        else:
            details_3_3, next_steps = self._guide_3_3()
            details += details_3_3
        details.append("the API services restart on their own; this can take up to 15 minutes")
        return Report(
            "restore.summary", f"restore ok: member {plan.name} {state}",
            {"member": plan.name, "healthy": self.healthy,
             "members": [m.as_json() for m in self.members]},
            details=details, warnings=list(self.warnings), next=next_steps)

    def _guide_3_3(self) -> tuple[list[str], list[str]]:
        """Every master of INITIAL_CLUSTER is restored (details, next): done once each has
        started in the restored cluster, which the member list the wait saw tells."""
        plan = self.plan
        entries = parse_initial_cluster(plan.initial_cluster)
        if self.healthy is None:
            others = [e.name for e in entries if e.name != plan.name]
            return [], [f"run the same restore on the other {_masters(len(others))} of "
                        f"INITIAL_CLUSTER ({', '.join(others)}) unless done already, close "
                        "together: the cluster forms when a majority is restored"]
        # A member not started since the restore has no name in the member list yet; this
        # master serves (the wait saw it).
        started = {m.name for m in self.members if m.name} | {plan.name}
        left = [e.name for e in entries if e.name not in started]
        if not left:
            return [f"all {plan.members} masters of INITIAL_CLUSTER are restored and started: "
                    "the cluster is restored (guide 3.3 done)"], []
        return ([f"{plan.members - len(left)} of {plan.members} masters of INITIAL_CLUSTER are "
                 "restored and started"],
                [f"run the same restore on the {_masters(len(left))} left ({', '.join(left)}) "
                 "with the same backup and --initial-cluster"])


def _masters(count: int) -> str:
    return f"{count} master{'s' if count != 1 else ''}"


# ---- preflight: every check, no change -----------------------------------------------------
def _plan(ctx: Context, request: RestoreRequest) -> RestorePlan:
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
        tool_probe = pool.submit(restore_tool, ctx)
        revision, legacy_bytes, report = _check_backup(ctx, given, request)
        tool = tool_probe.result()
    snapshot_bytes = report.size if report else (legacy_bytes or 0)
    operation_id = new_operation_id(OPERATION)
    stash = paths.state_dir / operation_id
    data_dir = paths.etcd_data_dir
    data_dir_fs, needed = data_dir_room(ctx, snapshot_bytes)
    if given.kind == "legacy" and same_filesystem(data_dir.parent, paths.state_dir):
        # As on RHCOS, where /var/lib holds both: the extracted snapshot stays until the end.
        paths.require_free_space(data_dir_fs, 2 * needed,
                                 "the extracted snapshot and the restored data dir")
    else:
        paths.require_free_space(data_dir_fs, needed, "the restored data dir")
        if given.kind == "legacy":
            paths.require_free_space(nearest_existing(paths.state_dir), needed,
                                     "the extracted snapshot")
    if data_dir.exists() and not same_filesystem(data_dir, paths.state_dir):
        paths.require_free_space(nearest_existing(paths.state_dir),
                                 tree_bytes(data_dir) + SPACE_FLOOR,
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
    return RestorePlan(
        id=operation_id,
        warnings=tuple(warnings),
        wait=request.wait,
        backup=request.backup,
        kind=given.kind,
        snapshot=paths.shown(given.snapshot) if given.snapshot else None,
        archive=paths.shown(given.archive) if given.archive else None,
        revision=revision,
        snapshot_revision=report.revision if report else None,
        # The trailer was verified above (or the db has none): no second hash in etcdutl.
        skip_hash_check=True,
        name=local.name,
        peer_url=local.peer_url,
        initial_cluster=render_initial_cluster([(e.name, e.peer_url) for e in entries]),
        members=len(entries),
        stash=paths.shown(stash),
        tool=tool,
        bump=bump_for(raft_index) if (request.bump_revision and tool.can_bump) else None,
        snapshot_bytes=snapshot_bytes,
    )


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


def data_dir_room(ctx: Context, snapshot_bytes: int) -> tuple[Path, int]:
    """Where the restored data dir is written (its nearest existing directory) and the room
    it needs: the db as etcdutl writes it, and etcd's first WAL file."""
    return (nearest_existing(ctx.paths.etcd_data_dir.parent),
            int(snapshot_bytes * SPACE_MARGIN) + SPACE_FLOOR)


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


def restore_tool(ctx: Context) -> RestoreTool:
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


# ---- the procedure -------------------------------------------------------------------------
class RestoreProcedure(Procedure[RestoreRequest, RestorePlan, RestoreResult]):
    operation = "restore"
    plan_type = RestorePlan

    def plan(self, ctx: Context, request: RestoreRequest) -> RestorePlan:
        return _plan(ctx, request)

    def steps(self, ctx: Context, plan: RestorePlan) -> list[Step[RestorePlan]]:
        shown = ctx.paths.shown
        manifests, data_dir = shown(ctx.paths.manifests), shown(ctx.paths.etcd_data_dir)
        pod_stop = f"{ctx.timeouts.pod_stop:.0f}s"
        steps: list[Step[RestorePlan]] = []
        if plan.kind == "legacy":
            steps.append(Step("extract-legacy-snapshot", f"extract snapshot.db from "
                              f"{plan.archive} into {plan.stash}", _extract_snapshot,
                              _remove_extracted_snapshot))
        steps += [
            Step("stop-static-pods", f"move every manifest of {manifests} to {plan.stash}/"
                 "manifests", _stop_static_pods, _start_static_pods),
            Step("wait-etcd-pod-stopped", f"wait (<= {pod_stop}) until the {ETCD_POD} pod is "
                 "gone", _wait_etcd_pod_stopped),
            Step("stop-kubelet", "systemctl stop kubelet.service", shared_steps.stop_kubelet,
                 shared_steps.start_kubelet_if_it_ran),
            Step("stop-all-containers", f"crictl stop every running container (<= {pod_stop})",
                 _stop_all_containers),
            Step("set-aside-data-dir", f"move {data_dir} to {plan.stash}/var-lib-etcd",
                 _set_aside_data_dir, _put_back_data_dir),
        ]
        if plan.revision is not None:
            steps.append(Step("set-aside-revisions", f"move kube-apiserver-pod-{plan.revision} "
                              f"and newer revisions to {plan.stash}/static-pod-resources",
                              _set_aside_revisions, _put_back_revisions))
        steps.append(Step("restore-data-dir", f"{plan.tool.flavor} snapshot restore into "
                          f"{data_dir} as member {plan.name} of {plan.members}",
                          _restore_data_dir, _remove_restored_data_dir))
        if plan.revision is not None:
            steps.append(Step("extract-static-resources", f"unpack kube-apiserver-pod-"
                              f"{plan.revision} from {plan.archive}", _extract_static_resources,
                              _remove_extracted_static_resources))
        steps += [
            Step("start-static-pods", f"move the manifests moved out back into {manifests}",
                 _start_static_pods, _stop_static_pods),
            Step("start-kubelet", "systemctl daemon-reload; systemctl start kubelet.service",
                 shared_steps.start_kubelet, _stop_control_plane),
        ]
        if plan.wait:
            # A step, so the host lock and `status` cover the wait, and `resume` waits again.
            steps.append(Step("wait-healthy", f"wait (<= {_health_timeout(ctx, plan):.0f}s) "
                              f"until member {plan.name} serves with a leader", _wait_healthy))
        return steps

    def finish(self, ctx: Context, plan: RestorePlan, journal: Journal) -> RestoreResult:
        """The result of a finished run: the members are those its wait step saw (none
        with --no-wait); nothing is asked of etcd again."""
        from toolbox.etcd.client import Member

        warnings = list(plan.warnings)
        if plan.bump is None:
            why = ("--no-bump-revision was given" if plan.tool.can_bump else
                   f"{plan.tool.flavor} cannot bump it (--bump-revision needs etcd 3.5.10+)")
            warnings.append(
                f"the revision was not bumped ({why}): etcd's revision goes back to the "
                "backup's, so clients holding a newer resourceVersion (kube-apiserver watch "
                "caches, informers) must re-list; restart them if they report 'too old "
                "resource version'")
        members = tuple(Member(m["id"], m["name"], tuple(m["peer_urls"]),
                               tuple(m["client_urls"]))
                        for m in journal.fact("members", []))
        return RestoreResult(plan, members, True if plan.wait else None, tuple(warnings))

    def confirmation(self, plan: RestorePlan) -> Confirmation:
        return Confirmation(f"restore of {plan.backup} as member {plan.name} "
                            f"({plan.peer_url}) of {plan.members}",
                            "Stop this master's control plane and restore etcd?")


PROCEDURE = RestoreProcedure()
OPERATION = PROCEDURE.operation


# ---- the steps -----------------------------------------------------------------------------
def _stash(run: StepRun[RestorePlan]) -> Path:
    return run.ctx.paths.host(run.plan.stash)


def _snapshot(run: StepRun[RestorePlan]) -> Path:
    """The snapshot restored: the backup's, or the one extracted from a 4.3.0 tarball."""
    plan = run.plan
    return run.ctx.paths.host(plan.snapshot) if plan.snapshot else _stash(run) / "snapshot.db"


def _archive(run: StepRun[RestorePlan]) -> Path:
    if run.plan.archive is None:  # the steps that unpack are only in plans with an archive
        raise AssertionError("this restore's backup has no archive")
    return run.ctx.paths.host(run.plan.archive)


def _revision(run: StepRun[RestorePlan]) -> int:
    if run.plan.revision is None:  # the revision steps are only in plans with a revision
        raise AssertionError("this restore's backup archives no kube-apiserver revision")
    return run.plan.revision


def _extract_snapshot(run: StepRun[RestorePlan]) -> None:
    ensure_private_dir(_stash(run))
    snapshot = _snapshot(run)
    if not snapshot.exists():
        extract_legacy_snapshot(_archive(run), snapshot)
    verify_file(snapshot)


def _remove_extracted_snapshot(run: StepRun[RestorePlan]) -> None:
    remove_quietly(_snapshot(run))


def _stop_static_pods(run: StepRun[RestorePlan]) -> None:
    manifests, stash = run.ctx.paths.manifests, _stash(run) / "manifests"
    ensure_private_dir(stash)
    moved = run.journal.fact("moved_manifests")
    if moved is None:  # decided once: a resumed run moves the same ones
        moved = sorted(p.name for p in manifests.iterdir() if p.is_file())
        run.journal.record("moved_manifests", moved)
    for name in moved:
        move_path(manifests / name, stash / name)


def _start_static_pods(run: StepRun[RestorePlan]) -> None:
    manifests, stash = run.ctx.paths.manifests, _stash(run) / "manifests"
    for name in run.journal.fact("moved_manifests", []):
        move_path(stash / name, manifests / name)


def _wait_etcd_pod_stopped(run: StepRun[RestorePlan]) -> None:
    Runtime(run.ctx.executor).wait_pod_stopped(ETCD_POD, run.ctx.timeouts.pod_stop)


def _stop_all_containers(run: StepRun[RestorePlan]) -> None:
    Runtime(run.ctx.executor).stop_all_containers(run.ctx.timeouts.pod_stop)


def _stop_control_plane(run: StepRun[RestorePlan]) -> None:
    """Undo of a started control plane: nothing may run on the data dir while the steps
    before put the old one back."""
    _stop_static_pods(run)
    _wait_etcd_pod_stopped(run)
    Runtime(run.ctx.executor).stop_kubelet()
    _stop_all_containers(run)


def _set_aside_data(run: StepRun[RestorePlan]) -> Path:
    return _stash(run) / "var-lib-etcd"


def _set_aside_data_dir(run: StepRun[RestorePlan]) -> None:
    data_dir, set_aside = run.ctx.paths.etcd_data_dir, _set_aside_data(run)
    if run.journal.fact("had_data_dir") is None:
        # Learnt before anything moves, for the undos: a data dir where there was none
        # is this restore's to remove.
        run.journal.record("had_data_dir", data_dir.exists())
    if set_aside.exists():
        # A cross-filesystem move killed after its copy was renamed into place: the copy is
        # whole, the source is the leftover.
        remove_quietly(data_dir)
    elif data_dir.exists():
        move_path(data_dir, set_aside)


def _data_dir_is_ours(run: StepRun[RestorePlan]) -> bool:
    """True when what is at /var/lib/etcd was written by this restore."""
    return _set_aside_data(run).exists() or not run.journal.fact("had_data_dir", True)


def _put_back_data_dir(run: StepRun[RestorePlan]) -> None:
    data_dir, set_aside = run.ctx.paths.etcd_data_dir, _set_aside_data(run)
    if _data_dir_is_ours(run):
        remove_quietly(data_dir, partial_path(data_dir))
    if set_aside.exists():
        move_path(set_aside, data_dir)


def _set_aside_revisions(run: StepRun[RestorePlan]) -> None:
    paths, revision = run.ctx.paths, _revision(run)
    moved = run.journal.fact("moved_revisions")
    if moved is None:
        moved = [d.name for d in paths.kube_apiserver_revisions()
                 if (revision_number(d) or 0) >= revision]
        run.journal.record("moved_revisions", moved)
    for name in moved:
        move_path(paths.static_pod_resources / name,
                  _stash(run) / "static-pod-resources" / name)


def _put_back_revisions(run: StepRun[RestorePlan]) -> None:
    resources = run.ctx.paths.static_pod_resources
    for name in run.journal.fact("moved_revisions", []):
        remove_quietly(resources / name)
        move_path(_stash(run) / "static-pod-resources" / name, resources / name)


def _restore_data_dir(run: StepRun[RestorePlan]) -> None:
    ctx, plan = run.ctx, run.plan
    data_dir = ctx.paths.etcd_data_dir
    if data_dir.exists():
        return  # the rename below is the last act of a finished restore
    staging = partial_path(data_dir)
    remove_quietly(staging)
    snapshot = _snapshot(run)
    ctx.executor.run_tool(
        plan.tool.argv(snapshot, staging, name=plan.name, initial_cluster=plan.initial_cluster,
                       peer_url=plan.peer_url, skip_hash_check=plan.skip_hash_check,
                       bump=plan.bump),
        timeout=ctx.timeouts.scaled(ctx.timeouts.command, snapshot.stat().st_size))
    staging.chmod(0o700)
    move_path(staging, data_dir)


def _remove_restored_data_dir(run: StepRun[RestorePlan]) -> None:
    data_dir = run.ctx.paths.etcd_data_dir
    remove_quietly(partial_path(data_dir))
    if _data_dir_is_ours(run):
        remove_quietly(data_dir)


def _revision_dirs(run: StepRun[RestorePlan]) -> tuple[Path, Path]:
    """The archived revision's directory, and where it is unpacked before the rename."""
    resources, revision = run.ctx.paths.static_pod_resources, _revision(run)
    return (resources / f"kube-apiserver-pod-{revision}",
            resources / f".kube-apiserver-pod-{revision}.partial")


def _extract_static_resources(run: StepRun[RestorePlan]) -> None:
    target, staging = _revision_dirs(run)
    if target.exists():
        return
    remove_quietly(staging)
    extract_revision(_archive(run), _revision(run), staging)
    move_path(staging, target)


def _remove_extracted_static_resources(run: StepRun[RestorePlan]) -> None:
    # Only called once this step ran; the original revision, if any, was set aside.
    target, staging = _revision_dirs(run)
    remove_quietly(staging, target)


def _wait_healthy(run: StepRun[RestorePlan]) -> None:
    """Wait until the restored local member answers with a leader and its own name is
    published (before that, the member list calls it not started); the member list it saw
    is kept as a fact, for the result."""
    # gRPC (0.15 s to import) is loaded here, while etcd starts, not before the first step.
    from toolbox.etcd.client import EtcdClient, resolve_tls

    ctx, plan = run.ctx, run.plan
    members: list[Member] = []

    def healthy() -> bool:
        try:
            with EtcdClient.connect(ctx, resolve_tls(ctx)) as client:
                status = client.status()
                if not status.leader:
                    return False
                listed = client.members()
        except EtcdUnavailable:
            return False
        if not any(m.id == status.member_id and m.name for m in listed):
            return False
        members[:] = listed
        return True

    wait_until(healthy, timeout=_health_timeout(ctx, plan),
               what=f"the restored member {plan.name} to serve with a leader",
               next_step=("check `crictl ps --name etcd-member` and its log on the host"
                          if plan.members == 1 else "restore the other masters with the same "
                          "backup and --initial-cluster: the member serves once a majority "
                          "runs") + "; " + longer_health_wait("resume"),
               progress=_masters_running(ctx, plan))
    run.journal.record("members", [asdict(m) for m in members])


def _health_timeout(ctx: Context, plan: RestorePlan) -> float:
    """etcd opens the restored db and rebuilds its index before it serves: the wait grows
    with the snapshot. With more members, the others' restores (each as long) come first."""
    own = ctx.timeouts.scaled(ctx.timeouts.health, plan.snapshot_bytes)
    return own if plan.members == 1 else 2 * own


PEER_PROBE_TIMEOUT = 1.0  # a lost master's address may drop the packets: never wait long


def _masters_running(ctx: Context, plan: RestorePlan) -> Callable[[], str]:
    """Where the wait stands: which masters of INITIAL_CLUSTER run etcd, by a TCP connect
    to each one's peer URL (the restored member forms a cluster once a majority does)."""
    entries = parse_initial_cluster(plan.initial_cluster)
    probe_timeout = min(PEER_PROBE_TIMEOUT, ctx.timeouts.dial)

    def progress() -> str:
        with ThreadPoolExecutor(max_workers=len(entries)) as pool:
            up = dict(zip(entries, pool.map(lambda e: listening(e.peer_url, probe_timeout),
                                            entries), strict=True))
        running = sum(up.values())
        local_up = any(ok for e, ok in up.items() if e.name == plan.name)
        if plan.members == 1:
            return "etcd runs, no leader yet" if local_up else "etcd has not started yet"
        others_down = sum(not ok for e, ok in up.items() if e.name != plan.name)
        counted = f"{running} of {plan.members} run etcd"
        if others_down:
            more = "1 more master" if others_down == 1 else f"{others_down} more masters"
            return f"waiting for {more} to be restored ({counted})"
        if not local_up:
            return f"waiting for etcd to start on this master ({counted})"
        return (f"all {plan.members} masters run etcd, no leader yet: a master not restored "
                "with this backup and --initial-cluster still runs its old member")

    return progress
