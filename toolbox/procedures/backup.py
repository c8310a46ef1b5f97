"""Guide 1.1, "Backing up etcd": a verified snapshot and the static-resources archive.

Better than `etcd-snapshot-backup.sh`: every check runs before the first byte is written; the
snapshot's trailer is verified while it streams; files are 0600 in a 0700 directory; a
manifest records what the pair holds; nothing half-written survives a failure; retention
prunes only after the new pair verified.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolbox import __version__, log
from toolbox.context import Context
from toolbox.errors import (
    EtcdUnavailable,
    HostIOError,
    IntegrityError,
    InvalidInput,
    ObjectStoreError,
    PreconditionFailed,
    RecoveryError,
)
from toolbox.etcd import bbolt
from toolbox.etcd.client import EtcdClient, Member, Status, TlsFiles, resolve_tls
from toolbox.etcd.snapshot import TRAILER, SavedSnapshot, save_stream
from toolbox.host.archive import WrittenArchive, write_revision_archive
from toolbox.host.backups import (
    BackupSet,
    find_backup_sets,
    find_set,
    manifest_bytes,
    new_timestamp,
    set_names,
)
from toolbox.host.files import (
    atomic_write,
    ensure_private_dir,
    free_bytes,
    human_bytes,
    is_read_only,
    remove_quietly,
    tree_bytes,
)
from toolbox.host.lock import host_lock
from toolbox.host.paths import revision_number
from toolbox.journal import IN_FLIGHT, Journal
from toolbox.procedures.offsite_prune import PruneRequest, prune_store
from toolbox.procedures.offsite_upload import (
    Destination,
    UploadedSet,
    UploadRequest,
    destination,
    upload_set,
)
from toolbox.report import Report
from toolbox.store.s3 import Retention

_log = log.get(__name__)

YOUNG_CLIENT_CERT = dt.timedelta(hours=24)
EXPIRY_WARNING = dt.timedelta(days=30)
SPACE_MARGIN = 1.10
SPACE_FLOOR = 16 << 20


@dataclass(frozen=True)
class BackupRequest:
    directory: str          # a host path, as the guide writes it: /home/core/backup
    keep: int | None = None
    progress: bool = True
    upload: UploadRequest | None = None   # its `source` is this backup's new set
    keep_remote: int | None = None        # prune the store to this many sets after uploading


@dataclass
class BackupResult:
    directory: str          # as the operator gave it
    snapshot: SavedSnapshot
    archive: WrittenArchive
    manifest_path: Path
    manifest: dict[str, Any]
    pruned: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    created_dir: bool = False   # the directory did not exist (a typo shows here)
    uploaded: UploadedSet | None = None
    retention: Retention | None = None
    remote_pruned: list[str] = field(default_factory=list)

    def shown(self, path: Path) -> str:
        """A file of this backup as the operator named its directory: /home/core/backup/…,
        not /var/home/core/backup/… that /home resolves to on RHCOS."""
        return shown_in(self.directory, path)

    def report(self) -> Report:
        etcd = self.manifest["etcd"]
        revision = self.manifest["static_resources"]["kube_apiserver_revision"]
        snapshot, archive = self.shown(self.snapshot.path), self.shown(self.archive.path)
        uploaded = self.uploaded
        return Report(
            "backup.summary",
            f"backup ok in {self.seconds:.1f}s: {snapshot} ({human_bytes(self.snapshot.size)}, "
            f"revision {etcd['revision']}, {etcd['keys']} keys, sha256 "
            f"{self.snapshot.db_sha256[:12]}…) + {archive} (kube-apiserver-pod-{revision}, "
            f"{human_bytes(self.archive.size)})"
            + (f"; encrypted, uploaded and read back to {uploaded.url} in "
               f"{uploaded.seconds:.1f}s" if uploaded else "")
            + (f", Object Lock {self.retention.mode} until "
               f"{self.retention.until.isoformat(timespec='seconds')}"
               if uploaded and self.retention else ""),
            {"snapshot": snapshot, "snapshot_bytes": self.snapshot.size,
             "db_sha256": self.snapshot.db_sha256, "static_resources": archive,
             "static_resources_bytes": self.archive.size, "kube_apiserver_revision": revision,
             "revision": etcd["revision"], "keys": etcd["keys"],
             "seconds": round(self.seconds, 2), "pruned": self.pruned,
             "uploaded": str(uploaded.url) if uploaded else None,
             "upload_seconds": round(uploaded.seconds, 2) if uploaded else None,
             "remote_pruned": self.remote_pruned},
            details=[*([f"created {self.directory} (it did not exist)"] if self.created_dir
                       else []), *(f"pruned {path}" for path in self.pruned),
                     *(f"pruned {name} from the store" for name in self.remote_pruned)],
            warnings=self.warnings,
            next=[f"ocp-recovery backup ls {uploaded.url.location}" if uploaded else
                  "copy both files off this host (`ocp-recovery backup push DIR s3://…` "
                  "encrypts and uploads them); keep the static_kuberesources archive apart "
                  "from the snapshot (it holds the etcd encryption keys and an etcd client "
                  "key)"])


def shown_in(directory: str, path: Path) -> str:
    return f"{directory.rstrip('/')}/{path.name}"


@dataclass(frozen=True)
class _Plan:
    target: Path
    revision_dir: Path
    tls: TlsFiles
    status: Status
    members: list[Member]
    part_way: Journal | None     # an operation in flight on this host
    archive_tree_bytes: int      # of revision_dir, walked once for both room checks


def run(ctx: Context, request: BackupRequest) -> BackupResult:
    started = time.monotonic()
    target, unreachable = _destination(ctx, request)
    client, plan = _preflight(ctx, request)
    with ThreadPoolExecutor(max_workers=2) as pool, client, \
            host_lock(ctx.paths.state_dir, "backup"):
        # Read while the snapshot streams: parsing them (and importing cryptography) is
        # 0.05 s that would otherwise follow the stream.
        certificates = pool.submit(_certificate_dates, plan)
        result = _take(ctx, request, client, plan, pool, certificates)
    in_use = _files_in_use(ctx, plan.part_way)
    result.pruned = _prune(plan.target, request.keep, request.directory, in_use) \
        if request.keep else []
    result.warnings = [*_warnings(certificates.result()),
                       *_next_backup_warning(request, plan, result.snapshot.size)]
    if plan.part_way is not None:
        result.warnings.append(
            f"a `{plan.part_way.operation}` ({plan.part_way.data['id']}) is part-way on this "
            f"host ({_how_it_stopped(plan.part_way)}): this snapshot holds the state it left "
            "etcd in, and no set it reads from was pruned; `ocp-recovery status` says how to "
            "finish or undo it")
    if not plan.status.leader:
        result.warnings.append(
            f"the etcd member at {plan.status.endpoint} has no leader (its cluster has no "
            "quorum): the snapshot holds what that member had when quorum was lost, which may "
            "be behind the cluster's last state; back up from a healthy member when you can")
    if request.upload is not None:
        _upload(ctx, request, result, target, unreachable)
    result.seconds = time.monotonic() - started
    for warning in result.warnings:
        _log.warning("backup.warning", message=warning)
    _log.info("backup.done", snapshot=result.shown(result.snapshot.path),
              revision=result.manifest["etcd"]["revision"], seconds=round(result.seconds, 2))
    return result


def _destination(ctx: Context, request: BackupRequest
                 ) -> tuple[Destination | None, ObjectStoreError | None]:
    """Bad upload options refuse the backup before anything is written; a store that is
    down or refuses does not stop the local backup, which is then reported as not off-site."""
    if request.upload is None:
        return None, None
    if request.keep_remote is not None and request.keep_remote < 1:
        raise InvalidInput("--keep-remote must be at least 1", next_step="e.g. --keep-remote 14")
    try:
        return destination(ctx, request.upload), None
    except ObjectStoreError as exc:
        return None, exc


def _upload(ctx: Context, request: BackupRequest, result: BackupResult,
            target: Destination | None, unreachable: ObjectStoreError | None) -> None:
    assert request.upload is not None
    kept = (f"the local backup {result.shown(result.snapshot.path)} verified and is kept; it "
            "is not off-site")
    push = f"ocp-recovery backup push {result.shown(result.snapshot.path)} {request.upload.url}"
    try:
        if unreachable is not None:
            raise unreachable
        assert target is not None
        new_set = find_set(result.snapshot.path, result.shown(result.snapshot.path))
        result.uploaded = upload_set(ctx, target, new_set, result.manifest, request.progress)
        result.retention = target.retention
        if request.keep_remote:
            result.remote_pruned = prune_store(target.bucket, PruneRequest(
                str(target.location), request.keep_remote,
                protect=(new_set.timestamp,))).removed
    except RecoveryError as exc:
        exc.state = f"{kept} ({exc.state})"
        # Not "run the same command again": that would take another backup.
        exc.next_step = f"{exc.next_step.split(', then run the same command again')[0]}; " \
            f"then upload this set: {push}"
        raise


def _preflight(ctx: Context, request: BackupRequest) -> tuple[EtcdClient, _Plan]:
    """Everything that can refuse the backup, before anything is written."""
    if request.keep is not None and request.keep < 1:
        raise InvalidInput("--keep must be at least 1",
                           next_step=f"ocp-recovery backup {request.directory or 'DIR'} --keep 7")
    if not request.directory:
        raise InvalidInput("a backup directory is required",
                           next_step="ocp-recovery backup /home/core/backup")
    target = ctx.paths.host(request.directory)
    if target.exists() and not target.is_dir():
        raise InvalidInput(f"{request.directory} exists and is not a directory",
                           next_step="ocp-recovery backup /home/core/backup (a directory; it "
                           "is created if missing)")
    existing = target
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InvalidInput(f"{ctx.paths.shown(existing)} is not a directory, so "
                           f"{request.directory} cannot be created")
    if not os.access(existing, os.W_OK | os.X_OK) or is_read_only(existing):
        raise InvalidInput(f"{ctx.paths.shown(existing)} is not writable",
                           next_step="choose a writable directory for the backup")
    revisions = ctx.paths.kube_apiserver_revisions()
    if not revisions:
        raise PreconditionFailed(
            f"no kube-apiserver-pod-N directory in "
            f"{ctx.paths.shown(ctx.paths.static_pod_resources)}: there are no static "
            "resources (encryption keys) to archive with the snapshot",
            next_step="check that this is a master and --host-root points at its /",
        )
    tls = resolve_tls(ctx)
    part_way = Journal.load(ctx.paths.state_dir)
    if part_way is not None and part_way.status not in IN_FLIGHT:
        part_way = None
    client = _connect(ctx, tls, part_way)
    try:
        status = client.status()
        members = client.members()
        last = [s.snapshot.stat().st_size for s in find_backup_sets(target) if s.snapshot]
        archive_tree_bytes = tree_bytes(revisions[-1])
        set_bytes = max([status.db_size, *last[-1:]]) + archive_tree_bytes
        ctx.paths.require_free_space(existing, _space_needed(set_bytes),
                                     f"the snapshot and archive ({_with_margin(set_bytes)})")
    except BaseException:
        client.close()
        raise
    return client, _Plan(target, revisions[-1], tls, status, members, part_way,
                         archive_tree_bytes)


def _connect(ctx: Context, tls: TlsFiles, part_way: Journal | None) -> EtcdClient:
    """The etcd client; when no member answers, an operation part-way on this host (a
    restore stops etcd until it is resumed or rolled back) is named as the likely cause."""
    try:
        return EtcdClient.connect(ctx, tls)
    except EtcdUnavailable as exc:
        if part_way is None:
            raise
        raise EtcdUnavailable(
            exc.what, state=f"unchanged: nothing was done; a `{part_way.operation}` "
            f"({part_way.data['id']}) is part-way on this host ({_how_it_stopped(part_way)}), "
            "which can keep this master's etcd stopped until it is finished or undone",
            next_step="ocp-recovery status, then ocp-recovery resume or ocp-recovery rollback; "
            "back up after that, or now with --endpoints of a healthy member") from exc


def _space_needed(set_bytes: int) -> int:
    """What a backup whose db and archive tree hold `set_bytes` refuses to start without."""
    return int(set_bytes * SPACE_MARGIN) + SPACE_FLOOR


def _with_margin(set_bytes: int) -> str:
    """How _space_needed is made up, for the operator who wonders why so much."""
    return f"{human_bytes(set_bytes)}, plus {SPACE_MARGIN - 1:.0%} and " \
        f"{human_bytes(SPACE_FLOOR)} of margin"


def _next_backup_warning(request: BackupRequest, plan: _Plan, snapshot_bytes: int
                         ) -> list[str]:
    """A scheduled backup that will be refused tomorrow is said today, while it can be
    fixed: the next one needs the room this one took, on top of the sets kept."""
    set_bytes = max(plan.status.db_size, snapshot_bytes) + plan.archive_tree_bytes
    needed = _space_needed(set_bytes)
    left = free_bytes(plan.target)
    if left >= needed:
        return []
    sets = find_backup_sets(plan.target)
    held = sum(path.stat().st_size for s in sets for path in s.files)
    kept = f" (--keep {request.keep} prunes only after the next set is written, so " \
        f"{request.keep + 1} sets must fit)" if request.keep else ""
    # Lowering --keep frees only what the older sets hold: say so only when they hold it.
    fewer = ", keep fewer sets (--keep)" if len(sets) > 1 and \
        held - held // len(sets) >= needed - left else ""
    return [f"{request.directory} has {human_bytes(left)} free now, "
            f"{human_bytes(needed - left)} less than the next backup needs "
            f"({human_bytes(needed)}: {_with_margin(set_bytes)}): it will be "
            f"refused for lack of space{kept}; the {len(sets)} set(s) there take "
            f"{human_bytes(held)}. Free space there{fewer}, or move the backups to a larger "
            "volume"]


@dataclass(frozen=True)
class _CertificateDates:
    earliest_archived_expiry: dt.datetime | None   # of the revision going into the archive
    client_issued: dt.datetime | None              # the etcd client certificate's notBefore


def _certificate_dates(plan: _Plan) -> _CertificateDates:
    from toolbox.pki.certs import certificates_in_tree, load_certificates

    expiries = [c.not_valid_after_utc for _, c in certificates_in_tree(plan.revision_dir)]
    client_certs = load_certificates(plan.tls.cert.read_bytes())
    return _CertificateDates(min(expiries) if expiries else None,
                             client_certs[0].not_valid_before_utc if client_certs else None)


def _take(ctx: Context, request: BackupRequest, client: EtcdClient, plan: _Plan,
          pool: ThreadPoolExecutor, certificates: Future[_CertificateDates]) -> BackupResult:
    created_dir = ensure_private_dir(plan.target)
    stamp = new_timestamp(plan.target)
    snapshot_name, archive_name, manifest_name = set_names(stamp)
    written = [plan.target / archive_name, plan.target / snapshot_name,
               plan.target / manifest_name]
    # Compressed while the snapshot streams (zlib lets go of the GIL): 0.05 s that would
    # otherwise come before the stream.
    archiving = pool.submit(write_revision_archive, plan.revision_dir, ctx.paths.kubernetes,
                            written[0])
    try:
        with log.progress("snapshot", plan.status.db_size,
                          draw=request.progress and ctx.interactive) as progress:
            snapshot = save_stream(client.snapshot_chunks(), written[1],
                                   expected_size=plan.status.db_size, progress=progress)
        try:
            db = bbolt.read_status(snapshot.path, length=snapshot.size - TRAILER)
        except bbolt.BoltFormatError as exc:
            raise IntegrityError(
                f"the snapshot etcd sent is not a database this toolbox can read: {exc}",
                state="unchanged: the backup's files were removed",
                next_step="run the backup again; if it repeats, report it with "
                "`etcdctl snapshot save` of the same member") from exc
        _log.info("snapshot.saved", path=shown_in(request.directory, snapshot.path),
                  bytes=snapshot.size, revision=db.revision, keys=db.live_keys,
                  seconds=round(snapshot.seconds, 2))
        archive = archiving.result()
        _log.info("backup.archive.saved", path=shown_in(request.directory, written[0]),
                  bytes=archive.size, revision_dir=plan.revision_dir.name)
        manifest = _manifest(ctx, plan, client, snapshot, archive, db, certificates.result())
        atomic_write(written[2], manifest_bytes(manifest))
    except BaseException as exc:
        wait([archiving])  # so that it writes nothing after the clean-up
        remove_quietly(*written)
        if created_dir and not any(plan.target.iterdir()):
            plan.target.rmdir()
        if isinstance(exc, OSError):  # a bad disk, a file system gone read-only: not a bug
            raise HostIOError(
                f"the backup to {request.directory} failed: {exc}",
                state="unchanged: the files of this backup were removed",
                next_step="check the disk and the file system (`dmesg`, `mount`), or choose "
                "another directory, then run the same command again") from exc
        raise
    return BackupResult(request.directory, snapshot, archive, written[2], manifest,
                        created_dir=created_dir)


def _manifest(ctx: Context, plan: _Plan, client: EtcdClient, snapshot: SavedSnapshot,
              archive: WrittenArchive, db: bbolt.BoltStatus, certificates: _CertificateDates
              ) -> dict[str, Any]:
    expiry = certificates.earliest_archived_expiry
    return {
        "format": 1,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "toolbox_version": __version__,
        "snapshot": {"file": snapshot.path.name, "size": snapshot.size,
                     "db_sha256": snapshot.db_sha256},
        "static_resources": {"file": archive.path.name, "size": archive.size,
                             "sha256": archive.sha256,
                             "kube_apiserver_revision": revision_number(plan.revision_dir),
                             "earliest_cert_expiry": expiry.isoformat() if expiry else None},
        "etcd": {
            "endpoint": client.endpoint,
            "version": plan.status.version,
            "cluster_id": f"{plan.status.cluster_id:x}",
            "member_id": f"{plan.status.member_id:x}",
            "revision": db.revision,
            "compact_revision": db.compact_revision,
            "raft_index": plan.status.raft_index,
            "db_size": snapshot.size - TRAILER,
            # read from the file, as `snapshot verify` counts them: one number, one meaning
            "keys": db.live_keys,
            "members": [m.as_json() for m in plan.members],
        },
    }


def _how_it_stopped(part_way: Journal) -> str:
    """A journal still `running` in preflight lost its process (a live one holds the host
    lock, which this backup takes next and would be refused)."""
    return "stopped part-way" if part_way.status == "running" else part_way.status


def _files_in_use(ctx: Context, part_way: Journal | None) -> set[Path]:
    """The host files the plan of an operation in flight names (its snapshot and archive,
    which `resume` reads again), as local paths."""
    def strings(value: Any) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, dict):
            value = list(value.values())
        return [t for item in value for t in strings(item)] \
            if isinstance(value, list | tuple) else []
    named = strings(part_way.plan) if part_way is not None else []
    return {ctx.paths.host(text) for text in named if text.startswith("/")}


def _prune(target: Path, keep: int, directory: str, in_use: set[Path]) -> list[str]:
    """Delete sets older than the `keep` newest verified ones; never below that floor, and
    never a set with a file in `in_use`. Returns what it deleted, named under `directory` as
    the operator gave it."""
    sets = find_backup_sets(target)
    verified = [s for s in sets if s.verified]
    if len(verified) < keep:
        return []
    oldest_kept = verified[-keep].timestamp
    doomed: list[BackupSet] = [s for s in sets if s.timestamp < oldest_kept
                               and not in_use.intersection(s.files)]
    pruned = []
    for backup in doomed:
        removed = [shown_in(directory, path) for path in backup.files]
        for path in backup.files:
            remove_quietly(path)
        pruned += removed
        _log.info("backup.pruned", timestamp=backup.timestamp, files=removed)
    return pruned


def _warnings(certificates: _CertificateDates) -> list[str]:
    now = dt.datetime.now(dt.UTC)
    found = []
    issued = certificates.client_issued
    if issued and now - issued < YOUNG_CLIENT_CERT:
        age = now - issued
        found.append(
            f"the etcd client certificate is only {age.total_seconds() / 3600:.1f} h old: the "
            "guide says not to back up before the first certificate rotation (24 h after "
            "installation); keep an older backup too")
    expiry = certificates.earliest_archived_expiry
    if expiry and expiry - now < EXPIRY_WARNING:
        found.append(f"a certificate in the archived revision expires on {expiry.isoformat()}: a "
                     "restore from this backup after that date needs the certificate "
                     "recovery procedure (guide 3.4)")
    return found

