"""The static-resources archive: `static-pod-resources/kube-apiserver-pod-N/...` in a gzip
tar, paths relative to /etc/kubernetes, modes and owners kept (4.3's `tar -cpzf`)."""

from __future__ import annotations

import contextlib
import copy
import gzip
import hashlib
import os
import re
import shutil
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from toolbox.errors import IntegrityError
from toolbox.host.files import partial_file


@dataclass(frozen=True)
class WrittenArchive:
    path: Path
    size: int
    sha256: str
    members: int


class _HashingWriter:
    """A write-only file object that hashes what passes through it."""

    def __init__(self, sink: BinaryIO):
        self.sink = sink
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.sink.write(data) or len(data)

    def flush(self) -> None:
        self.sink.flush()


def write_revision_archive(revision_dir: Path, kubernetes_dir: Path,
                           target: Path) -> WrittenArchive:
    arcname = str(revision_dir.relative_to(kubernetes_dir))
    with partial_file(target) as out:
        writer = _HashingWriter(out)
        with tarfile.open(fileobj=writer, mode="w:gz", compresslevel=6) as tar:  # type: ignore[call-overload]
            tar.add(revision_dir, arcname=arcname, recursive=True)
            members = len(tar.getmembers())
    return WrittenArchive(target, writer.size, writer.hash.hexdigest(), members)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


ARCHIVE_BYTES_CAP = 2 << 30     # uncompressed; a revision directory is a few MiB
LEGACY_SNAPSHOT_CAP = 16 << 30  # a 4.3.0 archive's snapshot.db: twice etcd's 8 GiB quota
ARCHIVE_MEMBERS_CAP = 100_000
LEGACY_SNAPSHOT = "snapshot.db"
# ASCII digits, no leading zero, nothing after: `-007`, `-٣` or a trailing newline would
# name a revision that extraction then does not find.
_REVISION_MEMBER = re.compile(
    r"\Astatic-pod-resources/kube-apiserver-pod-([1-9][0-9]*|0)(/.*)?\Z", re.ASCII | re.DOTALL)
# What reading a gzip tar raises when the file is not one (truncated, corrupted, garbage).
_UNREADABLE = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


@dataclass(frozen=True)
class ArchiveContents:
    revision: int | None          # the kube-apiserver-pod-N it holds
    members: int
    total_bytes: int
    legacy_snapshot_bytes: int | None  # a 4.3.0 single-file backup carries snapshot.db


@dataclass(frozen=True)
class _Entry:
    member: tarfile.TarInfo
    name: str                     # without `./` and a trailing `/`
    revision: int | None          # the kube-apiserver-pod-N it is in; None: outside one


class _CappedGzip:
    """The archive's decompressed bytes, read once: past `bytes_cap` (raised by the size of
    a legacy snapshot.db once its header passed) it is refused as a bomb."""

    def __init__(self, path: Path, stream: gzip.GzipFile, bytes_cap: int):
        self.path = path
        self.stream = stream
        self.bytes_cap = bytes_cap
        self.unpacked = 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.unpacked += len(data)
        if self.unpacked > self.bytes_cap + (1 << 20):
            raise IntegrityError(f"{self.path.name} unpacks to more than "
                                 f"{self.bytes_cap >> 20} MiB: refused as a possible archive bomb")
        return data


@contextlib.contextmanager
def _reading(path: Path, bytes_cap: int) -> Iterator[tuple[tarfile.TarFile, _CappedGzip]]:
    """The archive as a tar stream over its capped decompressed bytes; once the block is
    done, the rest is read to the gzip trailer, whose CRC and length catch a truncated or
    corrupted file that tarfile, stopping at the end-of-archive blocks, would not read."""
    with gzip.GzipFile(path, "rb") as stream:
        source = _CappedGzip(path, stream, bytes_cap)
        with tarfile.open(fileobj=source, mode="r|") as tar:  # type: ignore[call-overload]
            yield tar, source
        while source.read(1 << 20):
            pass


def _checked_entries(path: Path, tar: tarfile.TarFile, source: _CappedGzip) -> Iterator[_Entry]:
    """The archive's entries, each yielded only once it passed every rule: the one set of
    rules, applied by inspect_archive before any change and again by the extraction, entry
    by entry as it unpacks (the file may have been replaced in between). Refused: absolute
    paths, `..`, links leaving their revision directory, hard links, devices, other
    directories, more than one revision, more than the cap or ARCHIVE_MEMBERS_CAP. A 4.3.0
    archive's snapshot.db counts apart, up to LEGACY_SNAPSHOT_CAP."""
    revisions: set[int] = set()
    bytes_cap = source.bytes_cap
    total = members = 0
    snapshot_seen = False
    for member in tar:
        members += 1
        if not snapshot_seen and member.isfile() and \
                member.name.removeprefix("./") == LEGACY_SNAPSHOT:
            snapshot_seen = True
            if member.size > LEGACY_SNAPSHOT_CAP:
                raise IntegrityError(f"{path.name}: its {LEGACY_SNAPSHOT} is "
                                     f"{member.size >> 20} MiB, more than the "
                                     f"{LEGACY_SNAPSHOT_CAP >> 30} GiB an etcd db can be: "
                                     "refused as a possible archive bomb")
            source.bytes_cap += member.size
        else:
            total += max(member.size, 0)
        if total > bytes_cap or members > ARCHIVE_MEMBERS_CAP:
            raise IntegrityError(
                f"{path.name} unpacks to more than {bytes_cap >> 20} MiB or "
                f"{ARCHIVE_MEMBERS_CAP} entries: refused as a possible archive bomb")
        name = _checked_name(path, member)
        if (name == LEGACY_SNAPSHOT and member.isfile()) or \
                (name == "static-pod-resources" and member.isdir()):
            yield _Entry(member, name, None)
            continue
        match = _REVISION_MEMBER.match(name)
        if not match:
            raise IntegrityError(
                f"{path.name} holds {name!r}, which is not under "
                "static-pod-resources/kube-apiserver-pod-<N>/")
        revisions.add(int(match.group(1)))
        if len(revisions) > 1:
            raise IntegrityError(f"{path.name} holds several revisions "
                                 f"({', '.join(map(str, sorted(revisions)))}); expected one")
        _check_type(path, member, name)
        yield _Entry(member, name, int(match.group(1)))


def inspect_archive(path: Path, *, bytes_cap: int = ARCHIVE_BYTES_CAP) -> ArchiveContents:
    """Read the whole archive once and refuse anything unsafe or unexpected (the rules of
    `_checked_entries`) before a byte is extracted."""
    revision: int | None = None
    total = members = 0
    legacy: int | None = None
    try:
        with _reading(path, bytes_cap) as (tar, source):
            for entry in _checked_entries(path, tar, source):
                members += 1
                total += max(entry.member.size, 0)
                if entry.name == LEGACY_SNAPSHOT:
                    legacy = entry.member.size
                revision = entry.revision if entry.revision is not None else revision
    except (*_UNREADABLE, OSError) as exc:
        raise IntegrityError(f"{path.name} is not a readable gzip tar: {exc}",
                             next_step="use another backup") from exc
    return ArchiveContents(revision, members, total, legacy)


def _checked_name(path: Path, member: tarfile.TarInfo) -> str:
    name = member.name.removeprefix("./").rstrip("/")
    parts = PurePosixPath(name).parts
    if not name or member.name.startswith("/") or ".." in parts:
        raise IntegrityError(f"{path.name} has an unsafe path {member.name!r} "
                             "(absolute or with ..): refused")
    return name


def _check_type(path: Path, member: tarfile.TarInfo, name: str) -> None:
    if member.isfile() or member.isdir():
        return
    if member.issym():
        top = PurePosixPath(*PurePosixPath(name).parts[:2])
        target = PurePosixPath(member.linkname)
        resolved = _normalize(PurePosixPath(name).parent / target)
        if target.is_absolute() or resolved is None or \
                not str(resolved).startswith(str(top) + "/"):
            raise IntegrityError(f"{path.name}: symlink {name} -> {member.linkname} leaves "
                                 "its revision directory: refused")
        return
    kind = "hard link" if member.islnk() else "device or special file"
    raise IntegrityError(f"{path.name}: {name} is a {kind}: refused")


def _normalize(path: PurePosixPath) -> PurePosixPath | None:
    parts: list[str] = []
    for part in path.parts:
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part not in (".", ""):
            parts.append(part)
    return PurePosixPath(*parts) if parts else None


# Python 3.11.4+ has extraction filters; Debian 12's python3 (3.11.2) has not.
_DATA_FILTER = getattr(tarfile, "data_filter", None)
_FILTER_ERRORS: tuple[type[Exception], ...] = (
    (tarfile.FilterError,) if hasattr(tarfile, "FilterError") else ())


def _into_revision_dir(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """tarfile's `data` filter (nothing outside `dest`, no absolute or escaping links, no
    special files, no setuid or group/other write bits, no owners), keeping a directory's
    archived mode under the same limits, as the revision had it. Without the filter the
    same limits by hand: the entry rules already refused what it refuses outright."""
    if _DATA_FILTER is not None:
        safe = copy.copy(_DATA_FILTER(member, dest))
    else:
        safe = copy.copy(member)
        safe.uid = safe.gid = 0  # root's, as the data filter's "no owner" gives when root
        safe.uname = safe.gname = "root"
        safe.mode = (member.mode & 0o755) | (0o600 if member.isfile() else 0)
    if safe.isdir():
        safe.mode = member.mode & 0o755
    return safe


def extract_revision(path: Path, revision: int, staging: Path) -> None:
    """Unpack `kube-apiserver-pod-<revision>/` into `staging` (which must not exist), modes
    kept. Each entry is checked again as it is unpacked (the rules of inspect_archive, then
    tarfile's data filter), so an archive replaced since inspect_archive accepted it is
    refused with nothing written outside `staging`."""
    prefix = f"static-pod-resources/kube-apiserver-pod-{revision}"
    staging.mkdir(mode=0o700)
    found = False

    def in_revision(entries: Iterator[_Entry]) -> Iterator[tarfile.TarInfo]:
        nonlocal found
        for entry in entries:
            if entry.revision != revision:
                continue
            found = True
            if entry.name != prefix:  # the revision directory itself is `staging`
                inside = copy.copy(entry.member)
                inside.name = "/".join(PurePosixPath(entry.name).parts[2:])
                yield _into_revision_dir(inside, str(staging))

    try:
        with _reading(path, ARCHIVE_BYTES_CAP) as (tar, source):
            tar.errorlevel = 2  # nothing skipped with a debug message: every problem raises
            members = in_revision(_checked_entries(path, tar, source))
            if _DATA_FILTER is not None:
                # Filtered in in_revision already; this keeps 3.14 from filtering twice.
                tar.extractall(staging, members=members, filter="fully_trusted")
            else:
                tar.extractall(staging, members=members)
    except IntegrityError as exc:
        raise _changed_since_checked(exc.what) from exc
    except _FILTER_ERRORS as exc:
        raise _changed_since_checked(f"{path.name}: {exc}: refused") from exc
    except _UNREADABLE as exc:
        raise _changed_since_checked(f"{path.name} is not a readable gzip tar: {exc}") from exc
    if not found:
        raise _changed_since_checked(f"{path.name} holds no kube-apiserver-pod-{revision}")
    os.chmod(staging, 0o755)


def _changed_since_checked(what: str) -> IntegrityError:
    return IntegrityError(f"{what} (while extracting: the archive changed since it was "
                          "checked before the first change)",
                          state="nothing was extracted outside the staging directory")


def extract_legacy_snapshot(path: Path, target: Path) -> None:
    """Stream the 4.3.0 archive's `snapshot.db` to `target` (atomically), the entries
    before it checked again by the rules of inspect_archive."""
    try:
        with _reading(path, ARCHIVE_BYTES_CAP) as (tar, source):
            for entry in _checked_entries(path, tar, source):
                if entry.name == LEGACY_SNAPSHOT:
                    stream = tar.extractfile(entry.member)
                    assert stream is not None
                    with partial_file(target) as out:
                        shutil.copyfileobj(stream, out, 1 << 20)
                    return
    except IntegrityError as exc:
        raise _changed_since_checked(exc.what) from exc
    except _UNREADABLE as exc:
        raise _changed_since_checked(f"{path.name} is not a readable gzip tar: {exc}") from exc
    raise IntegrityError(f"{path.name} holds no {LEGACY_SNAPSHOT}")


def copy_legacy_snapshot(path: Path, sink: BinaryIO) -> int:
    """Stream the 4.3.0 archive's `snapshot.db` (the first, as extract_legacy_snapshot
    takes it) into `sink`, extracting nothing; returns its size."""
    try:
        with tarfile.open(path, mode="r|gz") as tar:
            for member in tar:
                if member.name.removeprefix("./") == LEGACY_SNAPSHOT and member.isfile():
                    source = tar.extractfile(member)
                    assert source is not None
                    shutil.copyfileobj(source, sink, 1 << 20)
                    return member.size
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise IntegrityError(f"{path.name} is not a readable gzip tar: {exc}",
                             next_step="use another backup") from exc
    raise IntegrityError(f"{path.name} holds no {LEGACY_SNAPSHOT}")


def read_revision_file(path: Path, relative: str, *, limit: int = 1 << 20) -> bytes | None:
    """The bytes of `kube-apiserver-pod-<N>/<relative>` (a regular file of at most `limit`
    bytes) in the archive, None when the archive has none; the whole archive is read with
    the checks of inspect_archive, so a damaged one is refused, not half-read."""
    found: bytes | None = None
    try:
        with _reading(path, ARCHIVE_BYTES_CAP) as (tar, source):
            for entry in _checked_entries(path, tar, source):
                inside = "/".join(PurePosixPath(entry.name).parts[2:])
                if entry.revision is None or inside != relative or not entry.member.isfile():
                    continue
                if entry.member.size > limit:
                    raise IntegrityError(f"{path.name}: {entry.name} is {entry.member.size} "
                                         f"bytes, more than the {limit} expected")
                stream = tar.extractfile(entry.member)
                found = stream.read() if stream is not None else None
    except (*_UNREADABLE, OSError) as exc:
        raise IntegrityError(f"{path.name} is not a readable gzip tar: {exc}",
                             next_step="use another backup") from exc
    return found
