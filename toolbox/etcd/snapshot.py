"""Snapshots: save (streamed, trailer verified while streaming), verify offline, inspect.

An etcd snapshot file is the bbolt database followed by a 32-byte trailer: the sha256 of
everything before it. `etcdctl snapshot save` only checks that the size leaves room for a
trailer; here the hash is computed while the bytes arrive and compared before the file is
renamed into place, so a backup that exists is a backup that verified.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from toolbox.errors import IntegrityError, InvalidInput
from toolbox.etcd import bbolt
from toolbox.host.files import human_bytes, partial_file, partial_path

TRAILER = 32
READ_CHUNK = 1 << 20
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SavedSnapshot:
    path: Path
    size: int
    db_sha256: str  # sha256 of the db, which is also the trailer's value
    seconds: float


@dataclass(frozen=True)
class SnapshotReport:
    path: Path
    size: int
    has_trailer: bool
    db_sha256: str
    revision: int
    keys: int  # etcd keys live at `revision`: what a restore of this file holds
    compact_revision: int
    page_size: int
    db_length: int             # bytes of the file that are the db
    status: bbolt.BoltStatus


class _TrailerHasher:
    """Hashes everything but the last 32 bytes seen, without copying the stream."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.tail = b""
        self.size = 0

    def update(self, chunk: bytes | memoryview) -> None:
        self.size += len(chunk)
        if len(chunk) >= TRAILER:
            view = memoryview(chunk)
            self.hash.update(self.tail)
            self.hash.update(view[:-TRAILER])
            self.tail = bytes(view[-TRAILER:])
        else:
            joined = self.tail + chunk
            self.hash.update(joined[:-TRAILER])
            self.tail = joined[-TRAILER:]

    def trailer_matches(self) -> bool:
        return len(self.tail) == TRAILER and self.hash.digest() == self.tail


def save_stream(chunks: Iterable[bytes | memoryview], target: Path, *, expected_size: int = 0,
                progress: Progress | None = None) -> SavedSnapshot:
    """Write the stream to `<target>.partial`, verify trailer and bbolt header, fsync, and
    rename. Any failure leaves no file behind."""
    started = time.monotonic()
    hasher = _TrailerHasher()
    with partial_file(target) as out:
        for chunk in chunks:
            out.write(chunk)
            hasher.update(chunk)
            if progress:
                progress(hasher.size, expected_size)
        if not hasher.trailer_matches():
            raise IntegrityError(
                f"the snapshot stream's sha256 trailer does not match its {hasher.size} bytes "
                "(corrupted in transit or truncated)",
                state="unchanged: the partial snapshot was removed",
                next_step="run the backup again; if it repeats, try another member with "
                "--endpoints",
            )
        out.flush()
        try:
            bbolt.check_header(partial_path(target), length=hasher.size - TRAILER)
        except bbolt.BoltFormatError as exc:
            raise IntegrityError(f"the snapshot is not a valid etcd database: {exc}",
                                 state="unchanged: the partial snapshot was removed") from exc
    return SavedSnapshot(target, hasher.size, hasher.hash.hexdigest(),
                         time.monotonic() - started)


def verify_file(path: Path, *, skip_hash_check: bool = False, shown: str | None = None,
                visit: bbolt.KeyVisitor | None = None) -> SnapshotReport:
    """Offline integrity check: the trailer's sha256 over the whole db, the bbolt meta pages,
    and the key bucket (revision, keys). Raises IntegrityError with what is wrong, naming
    the file `shown` (default: its path). `visit` sees bucket "key" during the walk."""
    label = shown or str(path)
    if not path.is_file():
        raise InvalidInput(f"{label} is not a file", next_step="give a snapshot_*.db file or "
                           "a backup directory")
    size = path.stat().st_size
    db_length = size - TRAILER
    has_trailer = False
    digest = ""
    if size < TRAILER:
        raise IntegrityError(f"{label} is {size} bytes: too short to be an etcd snapshot")
    if skip_hash_check:
        db_length = size if _looks_like_raw_db(path, size) else size - TRAILER
        status = _walk(path, label, db_length, visit)
    else:
        # The hash and the page walk at once: hashlib and the reads release the GIL, so
        # with a core free the check costs the longer of the two, not their sum. The trailer
        # is judged first, as a lone hash would be.
        with ThreadPoolExecutor(1, thread_name_prefix="snapshot-hash") as pool:
            hashing = pool.submit(_hash_file, path)
            try:
                walked: bbolt.BoltStatus | IntegrityError = _walk(path, label, db_length, visit)
            except IntegrityError as exc:
                walked = exc
            hasher = hashing.result()
        has_trailer = hasher.trailer_matches()
        digest = hasher.hash.hexdigest()
        if not has_trailer:
            _raise_no_trailer(path, label, size)
        if isinstance(walked, IntegrityError):
            raise walked
        status = walked
    return SnapshotReport(path, size, has_trailer, digest, status.revision, status.live_keys,
                          status.compact_revision, status.page_size, db_length, status)


def _hash_file(path: Path) -> _TrailerHasher:
    hasher = _TrailerHasher()
    with open(path, "rb", buffering=0) as stream:
        while chunk := stream.read(READ_CHUNK):
            hasher.update(chunk)
    return hasher


def _walk(path: Path, label: str, db_length: int,
          visit: bbolt.KeyVisitor | None) -> bbolt.BoltStatus:
    try:
        return bbolt.read_status(path, length=db_length, visit=visit)
    except bbolt.BoltFormatError as exc:
        raise IntegrityError(f"{label} is not a valid etcd database: {exc}") from exc


def _looks_like_raw_db(path: Path, size: int) -> bool:
    """A data dir's `member/snap/db` has no trailer: its size is a whole number of pages."""
    try:
        page_size, _ = bbolt.check_header(path, length=size)
    except bbolt.BoltFormatError:
        return False
    return size % page_size == 0


def _raise_no_trailer(path: Path, label: str, size: int) -> None:
    if _looks_like_raw_db(path, size):
        raise IntegrityError(
            f"{label} has no sha256 trailer: it looks like a raw data-dir db, not a snapshot",
            next_step="if you copied it from /var/lib/etcd/member/snap/db on purpose, pass "
            "--skip-hash-check",
        )
    raise IntegrityError(
        f"{label} failed its integrity check: the sha256 trailer does not match the "
        f"{human_bytes(size - TRAILER)} before it (truncated or corrupted)",
        next_step="use another backup; keep this file for analysis",
    )


# A fixed token, as the 4.3 script used: every master restored from the same snapshot with
# the same INITIAL_CLUSTER derives the same cluster and member IDs, so they form one cluster.
INITIAL_CLUSTER_TOKEN = "etcd-cluster-1"
UNKNOWN_BUMP = 1_000_000_000


@dataclass(frozen=True)
class RestoreTool:
    """The binary that writes a data dir from a snapshot: etcdutl (3.5+) or etcdctl (3.3/3.4)."""

    path: str
    flavor: str           # "etcdutl" or "etcdctl"
    can_bump: bool        # supports --bump-revision and --mark-compacted

    def argv(self, snapshot: Path, data_dir: Path, *, name: str, initial_cluster: str,
             peer_url: str, skip_hash_check: bool, bump: int | None) -> list[str]:
        argv = [self.path, "snapshot", "restore", str(snapshot), "--data-dir", str(data_dir),
                "--name", name, "--initial-cluster", initial_cluster,
                "--initial-cluster-token", INITIAL_CLUSTER_TOKEN,
                "--initial-advertise-peer-urls", peer_url]
        if skip_hash_check:
            argv.append("--skip-hash-check")
        if bump and self.can_bump:
            argv += ["--bump-revision", str(bump), "--mark-compacted"]
        return argv


def bump_for(raft_index: int | None) -> int:
    """OpenShift's later restore bumps by 1.2 x the last known raft index, or a billion
    when it is unknown. A backup's raft index says nothing of the writes made after it (and
    restarts near 0 after a restore), so a bump from it alone can leave an informer's newer
    resourceVersion un-compacted: never less than a billion (revisions are int64)."""
    return max(UNKNOWN_BUMP, int((raft_index or 0) * 1.2))
