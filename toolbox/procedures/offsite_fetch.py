"""`backup fetch s3://…[/SET] DIR` and the first half of `restore s3://…`: a stored set
downloaded, decrypted and verified into a host directory (issue 15). Every file is written
unnamed and linked in only once its ciphertext and plaintext hashes matched the manifest
(even SIGKILL leaves no partial file); the manifest comes last, and the set counts only
after the normal local verification (trailer, bbolt, archive hash). A failure leaves nothing
behind; a re-run after a kill keeps the whole files it finds."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

from toolbox import log
from toolbox.context import Context
from toolbox.errors import IntegrityError, InvalidInput
from toolbox.host.archive import file_sha256
from toolbox.host.backups import BackupSet, find_backup_sets, manifest_bytes, set_names
from toolbox.host.files import (
    atomic_write,
    ensure_private_dir,
    human_bytes,
    nearest_existing,
    remove_quietly,
    same_filesystem,
    unnamed_until_complete,
)
from toolbox.procedures import restore
from toolbox.procedures.verify import verify_set
from toolbox.report import Report
from toolbox.store.encryption import load_identities
from toolbox.store.s3 import Bucket
from toolbox.store.sets import StoredFile, StoredSet, choose_set, decrypt_stored_file
from toolbox.store.url import parse_store_url

_log = log.get(__name__)

SPACE_MARGIN = 1.05


@dataclass(frozen=True)
class FetchRequest:
    url: str                     # s3://BUCKET/PREFIX[/SET]
    directory: str               # host path the set is written to
    identity: str                # host path of the age identity
    endpoint_url: str | None = None
    progress: bool = True
    # Fetched for a restore: into DIRECTORY/<set>, so the restore takes that set, and the
    # restored data dir's room is checked with the set's, before anything is downloaded.
    for_restore: bool = False


def fetched_dir(ctx: Context) -> str:
    """Where `restore s3://…` puts what it fetched: under the state directory, one
    sub-directory per set, so that a restore of it takes exactly that set."""
    return f"{ctx.paths.state_dir_on_host.rstrip('/')}/fetched"


@dataclass
class FetchResult:
    stored: StoredSet
    directory: str               # as the operator gave it
    local: BackupSet
    seconds: float
    reused: bool = False         # the set was already there and verified

    def report(self) -> Report:
        newer = [s.timestamp for s in find_backup_sets(self.local.manifest.parent)
                 if s.timestamp > self.stored.name and s.snapshot] \
            if self.local.manifest else []
        etcd = self.stored.manifest.get("etcd", {})
        size = sum(f.plaintext_size for f in self.stored.files)
        rate = human_bytes(size / self.seconds) + "/s" if self.seconds else "?"
        how = "already there, verified" if self.reused else \
            f"downloaded, decrypted and verified in {self.seconds:.1f}s ({rate})"
        return Report(
            "backup.fetched",
            f"{self.stored.url} -> {self.directory}: {how}; revision {etcd.get('revision')}, "
            f"{human_bytes(size)}",
            {"url": str(self.stored.url), "directory": self.directory,
             "set": self.stored.name, "revision": etcd.get("revision"),
             "cluster_id": etcd.get("cluster_id"), "bytes": size,
             "seconds": round(self.seconds, 2), "reused": self.reused},
            warnings=[f"{self.directory} also holds newer sets ({', '.join(newer)}): `restore "
                      f"{self.directory}` would take the newest; fetch into an empty "
                      "directory to restore this one"] if newer else [],
            next=[] if newer else
            [f"ocp-recovery restore {self.directory} (on the master to restore)"])


def run(ctx: Context, request: FetchRequest) -> FetchResult:
    started = time.monotonic()
    url = parse_store_url(request.url)
    identities = load_identities(ctx.paths.host(request.identity), request.identity)
    target = ctx.paths.host(request.directory)
    if target.exists() and not target.is_dir():
        raise InvalidInput(f"{request.directory} exists and is not a directory",
                           next_step="give a directory (it is created if missing)")
    bucket = Bucket.connect(url.bucket, request.endpoint_url, ctx.aws_region)
    stored = choose_set(bucket, url)
    for_restore = request.for_restore
    if for_restore:
        shown = f"{request.directory.rstrip('/')}/{stored.name}"
        request = replace(request, directory=shown, for_restore=False)
        target = ctx.paths.host(shown)
    existing = next((s for s in find_backup_sets(target) if s.timestamp == stored.name), None)
    if existing is not None and existing.manifest is not None:
        return FetchResult(stored, request.directory, _reuse(existing, stored, request),
                           time.monotonic() - started, reused=True)
    kept = _left_by_a_killed_fetch(target, stored, request.directory)
    needed = sum(f.plaintext_size for f in stored.files if f.name not in kept)
    existed = nearest_existing(target)
    what = f"the set {stored.name} ({human_bytes(needed)})"
    needed = int(needed * SPACE_MARGIN)
    if for_restore:
        # On one file system (as on RHCOS) both stay until the restore is done.
        data_dir, data_dir_bytes = restore.data_dir_room(
            ctx, sum(f.plaintext_size for f in stored.files if f.role == "snapshot"))
        if same_filesystem(existed, data_dir):
            needed += data_dir_bytes
            what += " and the data dir restored from it"
        else:
            ctx.paths.require_free_space(data_dir, data_dir_bytes,
                                         "the data dir restored from it")
    ctx.paths.require_free_space(existed, needed, what)
    ensure_private_dir(target)
    written: list[Path] = []
    try:
        for stored_file in stored.files:
            if stored_file.name in kept:
                continue
            final = target / stored_file.name
            _download(ctx, bucket, stored_file, final, identities, request.progress)
            written.append(final)
        manifest = target / set_names(stored.name)[2]
        atomic_write(manifest, manifest_bytes(stored.manifest))
        written.append(manifest)
        local = next(s for s in find_backup_sets(target) if s.timestamp == stored.name)
        problems = verify_set(local).problems
        if problems:
            raise IntegrityError(f"{stored.url} decrypted, but the set does not verify: "
                                 f"{', '.join(problems)}",
                                 state=f"unchanged: nothing of it was left in "
                                 f"{request.directory}",
                                 next_step="use another set (`ocp-recovery backup ls "
                                 f"{url.location}`); keep this one for analysis")
    except BaseException:
        remove_quietly(*written)
        _remove_made_dirs(target, existed)
        raise
    seconds = time.monotonic() - started
    _log.info("backup.fetch.done", url=str(stored.url), seconds=round(seconds, 2))
    return FetchResult(stored, request.directory, local, seconds)


def _remove_made_dirs(directory: Path, existed: Path) -> None:
    """The directories a failed fetch made, while empty: DIR, and for `restore s3://` the
    state directory and its fetched/ too (the host as it was)."""
    while directory != existed and directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
        directory = directory.parent


def _download(ctx: Context, bucket: Bucket, stored: StoredFile, final: Path,
              identities: list[object], progress: bool) -> None:
    with unnamed_until_complete(final) as stream, \
            log.progress(f"fetch {stored.name}", stored.size,
                         draw=progress and ctx.interactive) as update:
        decrypt_stored_file(bucket, stored, stream, identities, update)
    os.chmod(final, 0o600)


def _left_by_a_killed_fetch(target: Path, stored: StoredSet, shown: str) -> set[str]:
    """The names of the set's files already in DIR without its manifest (written last): a
    fetch killed part-way left them whole (each is linked in only once it matched the
    manifest). Kept when each is the stored file byte for byte; any other file of that name
    is not ours to overwrite."""
    kept = set()
    for stored_file in stored.files:
        path = target / stored_file.name
        if not path.exists() and not path.is_symlink():
            continue
        if path.is_symlink() or not path.is_file() or \
                path.stat().st_size != stored_file.plaintext_size or \
                file_sha256(path) != stored_file.plaintext_sha256:
            raise InvalidInput(f"{shown} already holds {stored_file.name}, which is not the "
                               f"one stored in {stored.url}",
                               state="unchanged: nothing was downloaded",
                               next_step="fetch into an empty directory")
        kept.add(stored_file.name)
    return kept


def _reuse(existing: BackupSet, stored: StoredSet, request: FetchRequest) -> BackupSet:
    """A set of that name already in DIR (a second run, a resumed restore): used only if it
    verifies and is the stored one, never overwritten (it may be the evidence)."""
    if existing.snapshot is None:
        raise InvalidInput(f"{request.directory} already holds backup_{stored.name}.json but "
                           f"not snapshot_{stored.name}.db",
                           state="unchanged: nothing was downloaded",
                           next_step="fetch into an empty directory")
    problems = verify_set(existing).problems
    snapshot = stored.file("snapshot")
    recorded = existing.read_manifest() or {}
    same = snapshot is not None and recorded.get("snapshot", {}).get("db_sha256") == \
        stored.manifest.get("snapshot", {}).get("db_sha256")
    if problems or not same:
        raise InvalidInput(f"{request.directory} already holds a set {stored.name} that "
                           + ("does not verify: " + ", ".join(problems) if problems
                              else "is not the stored one"),
                           state="unchanged: nothing was downloaded",
                           next_step="fetch into an empty directory")
    return existing
