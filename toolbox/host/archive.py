"""The static-resources archive: `static-pod-resources/kube-apiserver-pod-N/...` in a gzip
tar, paths relative to /etc/kubernetes, modes and owners kept (4.3's `tar -cpzf`)."""

from __future__ import annotations

import hashlib
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

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
