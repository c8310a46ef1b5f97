"""The static-resources archive: `static-pod-resources/kube-apiserver-pod-N/...` in a gzip
tar, paths relative to /etc/kubernetes, modes and owners kept (4.3's `tar -cpzf`)."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import tarfile
import zlib
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
ARCHIVE_MEMBERS_CAP = 100_000
LEGACY_SNAPSHOT = "snapshot.db"
# ASCII digits, no leading zero, nothing after: `-007`, `-٣` or a trailing newline would
# name a revision that extraction then does not find.
_REVISION_MEMBER = re.compile(
    r"\Astatic-pod-resources/kube-apiserver-pod-([1-9][0-9]*|0)(/.*)?\Z", re.ASCII | re.DOTALL)


@dataclass(frozen=True)
class ArchiveContents:
    revision: int | None          # the kube-apiserver-pod-N it holds
    members: int
    total_bytes: int
    legacy_snapshot_bytes: int | None  # a 4.3.0 single-file backup carries snapshot.db


def inspect_archive(path: Path, *, bytes_cap: int = ARCHIVE_BYTES_CAP) -> ArchiveContents:
    """Read the whole archive once and refuse anything unsafe or unexpected before a byte
    is extracted: absolute paths, `..`, links leaving their revision directory, hard links,
    devices, other directories, more than one revision, more than `bytes_cap` unpacked."""
    revisions: set[int] = set()
    total = members = 0
    legacy: int | None = None
    try:
        _read_whole_gzip(path, bytes_cap)
        with tarfile.open(path, mode="r|gz") as tar:
            for member in tar:
                members += 1
                total += max(member.size, 0)
                if total > bytes_cap or members > ARCHIVE_MEMBERS_CAP:
                    raise IntegrityError(
                        f"{path.name} unpacks to more than {bytes_cap >> 20} MiB or "
                        f"{ARCHIVE_MEMBERS_CAP} entries: refused as a possible archive bomb")
                name = _checked_name(path, member)
                if name == LEGACY_SNAPSHOT and member.isfile():
                    legacy = member.size
                    continue
                if name == "static-pod-resources" and member.isdir():
                    continue
                match = _REVISION_MEMBER.match(name)
                if not match:
                    raise IntegrityError(
                        f"{path.name} holds {name!r}, which is not under "
                        "static-pod-resources/kube-apiserver-pod-<N>/")
                revisions.add(int(match.group(1)))
                _check_type(path, member, name)
    except (tarfile.TarError, EOFError, OSError, zlib.error, gzip.BadGzipFile) as exc:
        raise IntegrityError(f"{path.name} is not a readable gzip tar: {exc}",
                             next_step="use another backup") from exc
    if len(revisions) > 1:
        raise IntegrityError(f"{path.name} holds several revisions "
                             f"({', '.join(map(str, sorted(revisions)))}); expected one")
    return ArchiveContents(next(iter(revisions)) if revisions else None, members, total, legacy)


def _read_whole_gzip(path: Path, bytes_cap: int) -> None:
    """tarfile stops at the last header it can read; gzip checks the stream's end and CRC,
    so a truncated or corrupted archive is caught here."""
    unpacked = 0
    with gzip.open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            unpacked += len(chunk)
            if unpacked > bytes_cap + (1 << 20):
                raise IntegrityError(f"{path.name} unpacks to more than {bytes_cap >> 20} MiB:"
                                     " refused as a possible archive bomb")


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


def extract_revision(path: Path, revision: int, staging: Path) -> None:
    """Unpack `kube-apiserver-pod-<revision>/` into `staging` (which must not exist), modes
    kept. Only call after inspect_archive accepted the archive."""
    prefix = f"static-pod-resources/kube-apiserver-pod-{revision}"
    staging.mkdir(mode=0o700)
    with tarfile.open(path, mode="r|gz") as tar:
        for member in tar:
            name = member.name.removeprefix("./").rstrip("/")
            if name != prefix and not name.startswith(prefix + "/"):
                continue
            local = staging.joinpath(*PurePosixPath(name).parts[2:])
            if member.isdir():
                local.mkdir(parents=True, exist_ok=True)
                os.chmod(local, member.mode & 0o7777)
            elif member.issym():
                local.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(member.linkname, local)
            elif member.isfile():
                local.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                with open(local, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
                os.chmod(local, member.mode & 0o7777)
    os.chmod(staging, 0o755)


def extract_legacy_snapshot(path: Path, target: Path) -> None:
    """Stream the 4.3.0 archive's `snapshot.db` to `target` (atomically)."""
    with tarfile.open(path, mode="r|gz") as tar:
        for member in tar:
            if member.name.removeprefix("./") == LEGACY_SNAPSHOT and member.isfile():
                source = tar.extractfile(member)
                assert source is not None
                with partial_file(target) as out:
                    shutil.copyfileobj(source, out, 1 << 20)
                return
    raise IntegrityError(f"{path.name} holds no {LEGACY_SNAPSHOT}")
