"""`snapshot verify PATH`: is this backup restorable? Needs no etcd. PATH is any form
`restore` takes (host/backups.py `resolve_backup_input`):

- a snapshot file: the sha256 trailer over the whole db, the bbolt meta pages and buckets;
- a 4.3.0 `snapshot_db_kuberesources_<ts>.tar.gz`: the archive read whole with the checks
  restore makes, and its snapshot.db checked as a snapshot file, from an unnamed copy that
  leaves nothing on the host;
- a directory: every backup set in it, each snapshot checked against its manifest (db
  sha256, size) and each archive against the sha256 the manifest recorded, or (a 4.3-made
  set, no manifest) read whole with the checks restore makes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from toolbox import log
from toolbox.context import Context
from toolbox.errors import IntegrityError, InvalidInput
from toolbox.etcd.snapshot import SnapshotReport, verify_file
from toolbox.host.archive import LEGACY_SNAPSHOT, file_sha256, inspect_archive
from toolbox.host.backups import (
    BackupSet,
    find_backup_sets,
    legacy_snapshot_copy,
    resolve_backup_input,
)

_log = log.get(__name__)


@dataclass
class VerifiedSet:
    name: str
    report: SnapshotReport | None
    archive_ok: bool | None   # None: no archive in the set
    manifest: bool
    problems: list[str] = field(default_factory=list)
    archive_revision: int | None = None  # read when the archive was read whole (no manifest)


def run(ctx: Context, path: str, *, skip_hash_check: bool = False) -> list[VerifiedSet]:
    local = ctx.paths.host(path)
    if not local.is_dir():
        given = resolve_backup_input(local, path)  # restore's rule: *.tar.gz is 4.3.0's
        if given.kind == "legacy":
            assert given.archive is not None
            return [_verify_legacy(ctx, given.archive, path, skip_hash_check)]
        return [VerifiedSet(local.name, verify_file(local, skip_hash_check=skip_hash_check),
                            None, False)]
    results = [verify_set(s) for s in find_backup_sets(local) if s.snapshot]
    if not results:
        raise InvalidInput(f"{path} holds no snapshot_<timestamp>.db",
                           next_step="give the directory `ocp-recovery backup` wrote to")
    bad = [r for r in results if r.problems]
    if bad:
        raise IntegrityError(
            f"{len(bad)} of {len(results)} backup set(s) in {path} failed verification: "
            + "; ".join(f"{r.name}: {', '.join(r.problems)}" for r in bad),
            next_step="restore from a set that verified; keep the failed files for analysis",
        )
    return results


def _verify_legacy(ctx: Context, archive: Path, shown: str,
                   skip_hash_check: bool) -> VerifiedSet:
    """A 4.3.0 single-file backup: the archive as restore reads it, then its snapshot.db."""
    contents = inspect_archive(archive)
    if contents.legacy_snapshot_bytes is None:
        raise InvalidInput(f"{shown} holds no {LEGACY_SNAPSHOT}, so it is not a 4.3.0 "
                           "single-file backup",
                           next_step="for a static_kuberesources archive, give the directory "
                           "that holds it and its snapshot_<timestamp>.db")
    with legacy_snapshot_copy(archive, contents.legacy_snapshot_bytes,
                              ctx.paths.state_dir) as snapshot:
        report = verify_file(snapshot, skip_hash_check=skip_hash_check,
                             shown=f"{LEGACY_SNAPSHOT} in {archive.name}")
    _log.info("verify.legacy", archive=shown, kube_apiserver_revision=contents.revision,
              ok=True)
    return VerifiedSet(archive.name, report, True, False)


def verify_set(backup: BackupSet) -> VerifiedSet:
    assert backup.snapshot is not None
    result = VerifiedSet(backup.timestamp, None, None, backup.manifest is not None)
    try:
        result.report = verify_file(backup.snapshot)
    except IntegrityError as exc:
        result.problems.append(exc.what)
        return result
    manifest = backup.read_manifest()
    if backup.manifest is not None and manifest is None:
        result.problems.append(f"{backup.manifest.name} is unreadable")
    if manifest:
        recorded = manifest.get("snapshot", {})
        if recorded.get("db_sha256") != result.report.db_sha256:
            result.problems.append("snapshot sha256 differs from the manifest")
        if recorded.get("size") != result.report.size:
            result.problems.append("snapshot size differs from the manifest")
    if backup.archive is not None:
        expected = (manifest or {}).get("static_resources", {}).get("sha256")
        if expected is not None:
            result.archive_ok = file_sha256(backup.archive) == expected
            if not result.archive_ok:
                result.problems.append(f"{backup.archive.name} sha256 differs from the "
                                       "manifest")
        else:  # a 4.3-made set has no manifest: read the archive as restore would
            try:
                result.archive_revision = inspect_archive(backup.archive).revision
                result.archive_ok = True
            except IntegrityError as exc:
                result.archive_ok = False
                result.problems.append(exc.what)
    _log.info("verify.set", timestamp=backup.timestamp, ok=not result.problems)
    return result


def describe(result: VerifiedSet) -> str:
    if result.report is None:
        return f"{result.name}: FAILED {', '.join(result.problems)}"
    r = result.report
    archive = {None: "no archive", True: "archive ok", False: "archive BAD"}[result.archive_ok]
    return (f"{result.name}: ok revision {r.revision}, {r.keys} keys, "
            f"{r.size} bytes, sha256 {r.db_sha256[:16]}…, {archive}"
            + (", manifest matched" if result.manifest else ""))
