"""`backup --upload` and `backup push`: a local backup set, verified, encrypted for its
recipients and uploaded; each object read back and hashed; the manifest last, the commit
marker (issue 15). The static-resources archive holds the etcd encryption keys: nothing is
ever uploaded in the clear."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolbox import log
from toolbox.context import Context
from toolbox.errors import IntegrityError, InvalidInput
from toolbox.host.backups import (
    BackupSet,
    find_backup_sets,
    find_set,
    manifest_bytes,
    timestamp_time,
)
from toolbox.host.files import atomic_write, human_bytes
from toolbox.host.lock import host_lock
from toolbox.procedures.verify import verify_set
from toolbox.report import Report
from toolbox.store.encryption import HashingReader, Recipients, encrypt, parse_recipients
from toolbox.store.s3 import Bucket, Retention, retention_for
from toolbox.store.sets import (
    ROLES,
    StoredFile,
    is_committed,
    manifest_key,
    object_key,
    offsite_manifest,
)
from toolbox.store.url import StoreUrl, parse_store_url

_log = log.get(__name__)

LOCK_MODES = ("governance", "compliance")


@dataclass(frozen=True)
class UploadRequest:
    source: str                        # host path: a backup directory or a file of a set
    url: str                           # s3://BUCKET/PREFIX
    recipients: tuple[str, ...] = ()
    recipients_files: tuple[str, ...] = ()  # host paths
    endpoint_url: str | None = None
    lock_days: int | None = None
    lock_mode: str = "governance"
    every_set: bool = False            # every set of the directory not yet on the store
    progress: bool = True


@dataclass
class UploadedSet:
    url: StoreUrl
    files: list[StoredFile]
    seconds: float
    skipped: bool = False              # already complete on the store


@dataclass
class UploadResult:
    location: StoreUrl
    sets: list[UploadedSet]
    retention: Retention | None
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def report(self) -> Report:
        sent = [s for s in self.sets if not s.skipped]
        total = sum(f.size for s in sent for f in s.files)
        rate = human_bytes(total / self.seconds) + "/s" if self.seconds else "?"
        summary = (f"uploaded {len(sent)} set(s) to {self.location} in {self.seconds:.1f}s "
                   f"({human_bytes(total)} encrypted, {rate}), each read back and "
                   "verified" if sent else f"nothing to upload: already on {self.location}")
        lock = (f"; Object Lock {self.retention.mode} until "
                f"{self.retention.until.isoformat(timespec='seconds')}" if self.retention else "")
        return Report(
            "backup.uploaded", summary + lock,
            {"location": str(self.location), "seconds": round(self.seconds, 2),
             "sets": [{"url": str(s.url), "skipped": s.skipped, "seconds": round(s.seconds, 2),
                       "files": {f.role: f.record() for f in s.files}} for s in self.sets],
             "retention": _retention_record(self.retention)},
            details=[f"{s.url}: {'already complete on the store' if s.skipped else 'verified'}"
                     for s in self.sets],
            warnings=self.warnings,
            next=[f"ocp-recovery backup ls {self.location}",
                  "keep the age identity (private key) off this cluster, with the operators: "
                  "without it the backup cannot be restored"])


@dataclass(frozen=True)
class Destination:
    """Where an upload goes, checked: reachable, these credentials accepted, the recipients
    valid, Object Lock available where asked."""
    bucket: Bucket
    location: StoreUrl
    recipients: Recipients
    retention: Retention | None


def destination(ctx: Context, request: UploadRequest) -> Destination:
    """Every check of the destination, before anything is written or sent (a backup with
    --upload runs it before taking the snapshot)."""
    location = parse_store_url(request.url)
    if location.set_name:
        raise InvalidInput(f"{request.url} names a set: uploads go to a prefix and the set's "
                           "own name is its timestamp",
                           next_step=f"give {location.location}")
    if request.lock_mode not in LOCK_MODES:
        raise InvalidInput(f"--lock-mode {request.lock_mode!r} is neither governance nor "
                           "compliance", next_step="--lock-mode governance")
    if request.lock_days is not None and request.lock_days < 1:
        raise InvalidInput("--lock-days must be at least 1", next_step="e.g. --lock-days 30")
    recipients = parse_recipients(request.recipients,
                                  [ctx.paths.host(f) for f in request.recipients_files],
                                  request.recipients_files)
    bucket = Bucket.connect(location.bucket, request.endpoint_url, ctx.aws_region)
    bucket.check_access()
    retention = None
    if request.lock_days:
        if not bucket.object_lock_enabled():
            raise InvalidInput(
                f"bucket {location.bucket} does not have Object Lock enabled, so --lock-days "
                "cannot protect these objects",
                state="unchanged: nothing was sent",
                next_step="upload without --lock-days, or to a bucket created with Object Lock "
                "(`aws s3api create-bucket --object-lock-enabled-for-bucket …`)")
        retention = retention_for(request.lock_days, request.lock_mode)
    return Destination(bucket, location, recipients, retention)


def local_sets(ctx: Context, request: UploadRequest
               ) -> tuple[tuple[BackupSet, dict[str, Any]], ...]:
    """The set(s) to push, each verified as a restore would check it, with its manifest."""
    source = ctx.paths.host(request.source)
    if request.every_set:
        if not source.is_dir():
            raise InvalidInput(f"--all needs a backup directory, and {request.source} is not "
                               "one", next_step="give the directory that holds the sets")
        sets = tuple(s for s in find_backup_sets(source) if s.snapshot and s.archive)
    else:
        sets = (find_set(source, request.source),)
    return tuple((backup, _checked_manifest(backup, request.source)) for backup in sets)


def _checked_manifest(backup: BackupSet, shown: str) -> dict[str, Any]:
    """The set verified, and its manifest: ours as written, or for a 4.3-made set what the
    verification read of its files (no cluster ID: a snapshot does not hold it)."""
    if backup.archive is None:
        raise InvalidInput(f"the set {backup.timestamp} in {shown} has no static_kuberesources "
                           "archive: a restore needs both files",
                           next_step="upload a complete set (`ocp-recovery backup ls DIR`)")
    verified = verify_set(backup)
    if verified.problems:
        raise IntegrityError(f"the local set {backup.timestamp} in {shown} failed "
                             f"verification: {', '.join(verified.problems)}",
                             state="unchanged: nothing was sent",
                             next_step="upload a set that verifies (`ocp-recovery snapshot "
                             "verify DIR`)")
    manifest = backup.read_manifest()
    if manifest is not None:
        return manifest
    report = verified.report
    assert report is not None and backup.snapshot is not None and backup.archive is not None
    return {"format": 1,
            "created": timestamp_time(backup.timestamp).isoformat(timespec="seconds"),
            "made_by": "a 4.3 backup script (no manifest of its own)",
            "snapshot": {"file": backup.snapshot.name, "size": report.size,
                         "db_sha256": report.db_sha256},
            "static_resources": {"file": backup.archive.name,
                                 "size": backup.archive.stat().st_size,
                                 "kube_apiserver_revision": verified.archive_revision},
            "etcd": {"revision": report.revision, "keys": report.keys, "cluster_id": None,
                     "compact_revision": report.compact_revision}}


def run(ctx: Context, request: UploadRequest) -> UploadResult:
    started = time.monotonic()
    target = destination(ctx, request)
    sets = local_sets(ctx, request)
    result = UploadResult(target.location, [], target.retention)
    for backup, manifest in sets:
        result.sets.append(upload_set(ctx, target, backup, manifest, request.progress))
    result.seconds = time.monotonic() - started
    return result


def upload_set(ctx: Context, target: Destination, backup: BackupSet, manifest: dict[str, Any],
               progress: bool) -> UploadedSet:
    """`manifest`: the set's, as on disk or as derived by local_sets. Under the host lock:
    two uploads of one set (the CronJob's and an operator's) would each read back the
    other's objects and fail."""
    with host_lock(ctx.paths.state_dir, f"upload of {backup.timestamp}"):
        if is_committed(target.bucket, target.location.with_set(backup.timestamp)):
            return UploadedSet(target.location.with_set(backup.timestamp), [], 0.0,
                               skipped=True)
        return _upload_set(ctx, target, backup, manifest, progress)


def _upload_set(ctx: Context, target: Destination, backup: BackupSet,
                local_manifest: dict[str, Any], progress: bool) -> UploadedSet:
    started = time.monotonic()
    bucket, location = target.bucket, target.location
    url = location.with_set(backup.timestamp)
    paths = {"static_resources": backup.archive, "snapshot": backup.snapshot}
    files: list[StoredFile] = []
    try:
        for role in ROLES:
            path = paths[role]
            assert path is not None
            files.append(_upload_file(ctx, target, url, role, path, progress))
        uploaded = _now()
        sent_seconds = time.monotonic() - started
        for stored in files:  # what the server holds, not what we sent
            size, sha256 = bucket.digest(stored.key)
            if (size, sha256) != (stored.size, stored.sha256):
                raise IntegrityError(
                    f"s3://{bucket.name}/{stored.key} read back as {size} bytes, sha256 "
                    f"{sha256[:16]}…; {stored.size} bytes, {stored.sha256[:16]}… were sent",
                    state="the set is incomplete on the store (no manifest): it is never "
                    "listed or restored; the local set is unchanged",
                    next_step="run the same command again; if it repeats, the store is "
                    "damaging data")
        offsite = {k: v for k, v in local_manifest.items() if k != "uploaded"}
        manifest = offsite_manifest(offsite, files, target.recipients.shown,
                                    uploaded, _now(), _retention_record(target.retention))
        bucket.put_bytes(manifest_key(location, backup.timestamp), manifest_bytes(manifest),
                         target.retention)
    except BaseException:
        bucket.delete_quietly([object_key(location, backup.timestamp, p.name)
                               for p in paths.values() if p is not None])
        raise
    if backup.manifest is not None:  # ours: `backup ls DIR` then shows the set is off-site
        local = backup.read_manifest() or {}
        local["uploaded"] = [*local.get("uploaded", []),
                             {"url": str(url), "verified": manifest["offsite"]["verified"]}]
        atomic_write(backup.manifest, manifest_bytes(local))
    seconds = time.monotonic() - started
    _log.info("backup.upload.done", url=str(url), seconds=round(seconds, 3),
              sent_seconds=round(sent_seconds, 3), bytes=sum(f.size for f in files))
    return UploadedSet(url, files, seconds)


def _upload_file(ctx: Context, target: Destination, url: StoreUrl, role: str, path: Path,
                 progress: bool) -> StoredFile:
    assert url.set_name is not None
    key = object_key(target.location, url.set_name, path.name)
    total = path.stat().st_size
    with open(path, "rb") as stream, \
            log.progress(f"upload {path.name}", total,
                         draw=progress and ctx.interactive) as update:
        reader = HashingReader(stream, update, total)
        with target.bucket.upload(key, target.retention) as writer:
            encrypt(reader, writer, target.recipients)
    _log.info("backup.upload.file", key=key, bytes=writer.size, plaintext_bytes=reader.size)
    return StoredFile(role, path.name, key, writer.size, writer.sha256.hexdigest(),
                      reader.size, reader.sha256.hexdigest())


def _retention_record(retention: Retention | None) -> dict[str, str] | None:
    return None if retention is None else {
        "mode": retention.mode, "until": retention.until.isoformat(timespec="seconds")}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
