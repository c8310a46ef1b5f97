"""Backup sets in a directory: `snapshot_<ts>.db` + `static_kuberesources_<ts>.tar.gz`
(or the guide's `static_kubernetes_<ts>.tar.gz`) + our `backup_<ts>.json`, paired by their
shared timestamp (the 4.3 restore picked the newest of each kind independently)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolbox.errors import InvalidInput
from toolbox.host.archive import copy_legacy_snapshot
from toolbox.host.files import scratch_file

TIMESTAMP_FORMAT = "%Y-%m-%d_%H%M%S"  # 4.3's `date "+%F_%H%M%S"`
_TS = r"(\d{4}-\d{2}-\d{2}_\d{6})"
_SNAPSHOT = re.compile(rf"^snapshot_{_TS}\.db$")
_ARCHIVE = re.compile(rf"^static_kube(?:resources|rnetes)_{_TS}\.tar\.gz$")
_MANIFEST = re.compile(rf"^backup_{_TS}\.json$")


@dataclass
class BackupSet:
    timestamp: str
    snapshot: Path | None = None
    archive: Path | None = None
    manifest: Path | None = None

    @property
    def files(self) -> list[Path]:
        return [p for p in (self.snapshot, self.archive, self.manifest) if p is not None]

    @property
    def verified(self) -> bool:
        """We write the manifest only after both files verified."""
        return self.manifest is not None and self.snapshot is not None

    def read_manifest(self) -> dict[str, Any] | None:
        if self.manifest is None:
            return None
        try:
            data = json.loads(self.manifest.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None


def find_backup_sets(directory: Path) -> list[BackupSet]:
    """Sets found in `directory`, oldest first."""
    sets: dict[str, BackupSet] = {}
    if not directory.is_dir():
        return []
    for path in directory.iterdir():
        if not path.is_file():
            continue
        for pattern, attr in ((_SNAPSHOT, "snapshot"), (_ARCHIVE, "archive"),
                              (_MANIFEST, "manifest")):
            match = pattern.match(path.name)
            if match:
                entry = sets.setdefault(match.group(1), BackupSet(match.group(1)))
                setattr(entry, attr, path)
    return [sets[k] for k in sorted(sets)]


def new_timestamp(directory: Path, now: float | None = None) -> str:
    """`%F_%H%M%S` of now, or a second after the newest set already there if that is later
    (a clock stepped back, a time zone changed): names sort by age, and retention keeps the
    newest names, so a new set must never sort before an old one."""
    moment = int(now if now is not None else time.time())
    taken = [s.timestamp for s in find_backup_sets(directory)]
    if taken and time.strftime(TIMESTAMP_FORMAT, time.localtime(moment)) <= taken[-1]:
        moment = int(time.mktime(time.strptime(taken[-1], TIMESTAMP_FORMAT))) + 1
    while (stamp := time.strftime(TIMESTAMP_FORMAT, time.localtime(moment))) in taken:
        moment += 1
    return stamp


def timestamp_time(timestamp: str) -> dt.datetime:
    """When a set was made, from its name (written in the master's local time)."""
    return dt.datetime.strptime(timestamp, TIMESTAMP_FORMAT).astimezone(dt.UTC)


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


def set_names(timestamp: str) -> tuple[str, str, str]:
    return (f"snapshot_{timestamp}.db", f"static_kuberesources_{timestamp}.tar.gz",
            f"backup_{timestamp}.json")


def find_set(path: Path, shown: str) -> BackupSet:
    """One set: a backup directory's newest (with a snapshot), or the set a file of it
    (snapshot_<ts>.db, static_kuberesources_<ts>.tar.gz, backup_<ts>.json) belongs to."""
    if path.is_dir():
        sets = [s for s in find_backup_sets(path) if s.snapshot is not None]
        if not sets:
            raise InvalidInput(f"{shown} holds no snapshot_<timestamp>.db",
                               next_step="give the directory `ocp-recovery backup` wrote to")
        return sets[-1]
    for pattern in (_SNAPSHOT, _ARCHIVE, _MANIFEST):
        match = pattern.match(path.name)
        if match and path.is_file():
            found = next(s for s in find_backup_sets(path.parent)
                         if s.timestamp == match.group(1))
            if found.snapshot is None:
                raise InvalidInput(f"the set of {shown} has no snapshot_{found.timestamp}.db",
                                   next_step="give a set that has its snapshot")
            return found
    what = "does not exist" if not path.exists() else "is not a file of a backup set"
    raise InvalidInput(f"{shown} {what}",
                       next_step="give a backup directory or one of its "
                       "snapshot_<timestamp>.db files")


@dataclass(frozen=True)
class BackupInput:
    """What a restore was given, resolved: the guide's three forms (reference spec §3.1)."""

    kind: str                  # "set" (a backup directory), "db" (a snapshot file), "legacy"
    snapshot: Path | None      # None for "legacy" until extracted
    archive: Path | None       # the static-resources archive (the legacy file itself)
    manifest: dict[str, Any] | None


def resolve_backup_input(path: Path, shown: str) -> BackupInput:
    if path.is_dir():
        sets = [s for s in find_backup_sets(path) if s.snapshot is not None]
        if not sets:
            raise InvalidInput(f"{shown} holds no snapshot_<timestamp>.db",
                               next_step="give the directory `ocp-recovery backup` wrote to, "
                               "or a snapshot file")
        newest = sets[-1]
        if newest.archive is None:
            raise InvalidInput(
                f"the newest snapshot in {shown} ({newest.snapshot.name if newest.snapshot else ''}"
                f") has no static_kuberesources archive of the same timestamp",
                next_step=f"give the snapshot file itself to restore without static resources "
                f"({shown.rstrip('/')}/snapshot_{newest.timestamp}.db)")
        return BackupInput("set", newest.snapshot, newest.archive, newest.read_manifest())
    if path.is_file() and path.name.endswith(".tar.gz"):
        return BackupInput("legacy", None, path, None)
    if path.is_file() and path.name.endswith(".json"):
        # Not a damaged snapshot: a file beside one (the set's manifest, say).
        raise InvalidInput(f"{shown} is a JSON file (a backup manifest?), not a snapshot",
                           next_step=f"give the directory that holds it "
                           f"({shown.rsplit('/', 1)[0] or '/'}) or its snapshot_*.db")
    if path.is_file():
        return BackupInput("db", path, None, None)
    what = "is not a regular file (nor a directory)" if path.exists() or path.is_symlink() \
        else "does not exist"
    raise InvalidInput(f"{shown} {what}",
                       next_step="give a backup directory, a snapshot_*.db or a 4.3.0 "
                       "snapshot_db_kuberesources_*.tar.gz")


def resolve_set_input(path: Path, shown: str) -> BackupInput:
    """What reads a backup's objects takes: as restore does, except that any file of a set
    (its snapshot, archive or manifest) means the whole set, so the archive's encryption
    keys come with its snapshot."""
    if path.is_file() and any(p.match(path.name) for p in (_SNAPSHOT, _ARCHIVE, _MANIFEST)):
        found = find_set(path, shown)
        return BackupInput("set", found.snapshot, found.archive, found.read_manifest())
    return resolve_backup_input(path, shown)


@contextlib.contextmanager
def legacy_snapshot_copy(archive: Path, size: int, scratch: Path) -> Iterator[Path]:
    """The 4.3.0 tarball's snapshot.db (`size` bytes) as a file to check, extracting nothing
    beside it: a copy in an unnamed scratch file near `scratch`."""
    with scratch_file(scratch, size, f"a copy of the snapshot.db in {archive.name} to "
                      "check") as (copy, path):
        copy_legacy_snapshot(archive, copy)
        copy.flush()
        yield path
