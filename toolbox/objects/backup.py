"""A backup opened for its objects: the snapshot checked and indexed in one pass, the keys
selected by namespace, resource or prefix, and values shown decoded and decrypted with the
keys of the same backup's static-resources archive."""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from toolbox.errors import IntegrityError, InvalidInput
from toolbox.etcd.bbolt import BoltFormatError, read_status
from toolbox.etcd.keyspace import KeyIndex, Keyspace, LiveKey
from toolbox.etcd.snapshot import TRAILER, SnapshotReport, verify_file
from toolbox.host.archive import read_revision_file
from toolbox.host.backups import resolve_set_input
from toolbox.objects.encoding import DecodedObject, ObjectDecodeError, decode, encoding_of
from toolbox.objects.encryption import EncryptionConfig, EncryptionConfigError
from toolbox.objects.keys import PREFIXES, ObjectKey, parse_key

ENCRYPTION_CONFIG = "secrets/encryption-config/encryption-config"
DEFAULT_PREFIX = PREFIXES[0]


@dataclass(frozen=True)
class Selection:
    """Which keys: every filter given must match. `keys`: exact keys (their own filter)."""

    namespace: str | None = None
    resource: str | None = None
    prefix: str | None = None
    keys: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.namespace or self.resource or self.prefix or self.keys)

    def describe(self) -> str:
        parts = [f"namespace {self.namespace}"] if self.namespace else []
        parts += [f"resource {self.resource}"] if self.resource else []
        parts += [f"keys under {self.prefix}"] if self.prefix else []
        parts += [f"{len(self.keys)} key(s)"] if self.keys else []
        return ", ".join(parts) or "every key"

    def matcher(self) -> Callable[[bytes], bool] | None:
        """A test on the raw key, for the scan: memory then holds only what matches."""
        if self.empty:
            return None
        wanted = frozenset(k.encode() for k in self.keys)
        prefix = self.prefix.encode() if self.prefix else b""
        by_object = bool(self.namespace or self.resource)

        def match(key: bytes) -> bool:
            if (wanted and key not in wanted) or not key.startswith(prefix):
                return False
            if not by_object:
                return True
            found = parse_key(key)
            if found is None or (self.resource and found.resource != self.resource):
                return False
            return not self.namespace or found.namespace == self.namespace or \
                (found.resource == "namespaces" and found.name == self.namespace)

        return match


@dataclass(frozen=True)
class Entry:
    live: LiveKey
    object: ObjectKey | None     # None: not an API object's key

    @property
    def encoding(self) -> str:
        return encoding_of(self.live.head)


@dataclass
class BackupObjects:
    shown: str                    # the backup as the operator named it
    snapshot: Path
    report: SnapshotReport
    keyspace: Keyspace            # the selected keys
    archive: Path | None
    manifest: dict[str, Any] | None
    extra: dict[bytes, LiveKey]   # the keys of `also` that the selection does not pick

    @classmethod
    def open(cls, local: Path, shown: str, selection: Selection = Selection(), *,
             also: frozenset[bytes] = frozenset()) -> BackupObjects:
        """Check the snapshot (sha256 trailer, bbolt structure) and index the selected keys
        and those of `also`, in one pass; IntegrityError (exit 6) for a damaged one, before
        anything is done."""
        given = resolve_set_input(local, shown)
        if given.kind == "legacy" or given.snapshot is None:
            raise InvalidInput(
                f"{shown} is a 4.3.0 single-file backup: its objects are read from a "
                "snapshot file",
                next_step=f"tar -xzf {shown} snapshot.db, then give that snapshot.db")
        match = selection.matcher()
        index = KeyIndex(None if match is None else
                         (lambda key: key in also or match(key)) if also else match)
        report = verify_file(given.snapshot, shown=shown, visit=index.visit)
        # A trailer proves only that the db is as hashed; the manifest says what the backup
        # wrote (a value changed and the trailer recomputed is still a well-formed db).
        recorded = (given.manifest or {}).get("snapshot", {}).get("db_sha256")
        if recorded and recorded != report.db_sha256:
            raise IntegrityError(
                f"{shown}: {given.snapshot.name} is not the snapshot its backup manifest "
                f"recorded (sha256 {report.db_sha256[:12]}…, the manifest says "
                f"{recorded[:12]}…): changed since the backup was taken",
                next_step="use another backup; `ocp-recovery snapshot verify DIR` checks "
                "every set in DIR against its manifest")
        extra = {k: index.found.pop(k) for k in also
                 if k in index.found and (match is not None and not match(k))}
        keyspace = index.keyspace(given.snapshot, report.db_length, report.status)
        return cls(shown, given.snapshot, report, keyspace, given.archive, given.manifest,
                   extra)

    @property
    def storage_prefix(self) -> str:
        """The API server's etcd prefix, as the selected keys show it."""
        first = next(iter(self.keyspace.keys), b"").decode("utf-8", "replace")
        return next((p for p in PREFIXES if first.startswith(p)), DEFAULT_PREFIX)

    def entries(self) -> list[Entry]:
        return [Entry(live, parse_key(key)) for key, live in self.keyspace.keys.items()]

    def entry(self, key: str) -> Entry:
        live = self.keyspace.keys.get(key.encode())
        if live is None:
            raise InvalidInput(f"{self.shown} holds no key {key!r} (at revision "
                               f"{self.report.revision})",
                               next_step=f"list what it holds: ocp-recovery snapshot ls "
                               f"{self.shown} --prefix {key.rsplit('/', 1)[0]}/")
        return Entry(live, parse_key(live.key))

    def plaintext(self, entry: Entry) -> bytes:
        """The stored value, decrypted when it is encrypted at rest."""
        value = self.keyspace.value(entry.live)
        if entry.encoding != "encrypted":
            return value
        resource = entry.object.resource if entry.object else ""
        try:
            return self.encryption.decrypt(value, resource)
        except EncryptionConfigError as exc:
            raise IntegrityError(f"{entry.live.key_text}: {exc}",
                                 next_step="give a backup set whose static_kuberesources "
                                 "archive holds the key (the same set as the snapshot)") from exc

    def decoded(self, entry: Entry) -> DecodedObject:
        try:
            return decode(self.plaintext(entry))
        except ObjectDecodeError as exc:
            raise IntegrityError(f"{entry.live.key_text} is not a Kubernetes object the "
                                 f"toolbox can decode: {exc}",
                                 next_step=f"show its bytes: ocp-recovery snapshot get "
                                 f"{self.shown} {entry.live.key_text} -o raw") from exc

    @cached_property
    def encryption(self) -> EncryptionConfig:
        """The encryption config archived with the snapshot (the same set)."""
        if self.archive is None:
            raise InvalidInput(
                f"{self.shown} is a snapshot without its static_kuberesources archive, which "
                "holds the keys its encrypted values need",
                next_step="give the backup directory or set, not the snapshot file alone")
        data = read_revision_file(self.archive, ENCRYPTION_CONFIG)
        if data is None:
            raise IntegrityError(f"{self.archive.name} holds no {ENCRYPTION_CONFIG}, but the "
                                 "snapshot has values encrypted at rest")
        return EncryptionConfig.parse(data, f"{self.archive.name}:{ENCRYPTION_CONFIG}")


def why_nothing(local: Path, shown: str, selection: Selection) -> str | None:
    """Why a selection picked nothing, from what the backup does hold: a typo's likely
    meaning. Reads the backup once more, so it is asked only when nothing was picked."""
    if selection.prefix and not selection.prefix.startswith("/"):
        return f"etcd keys start with /: --prefix /{selection.prefix}"
    if not (selection.namespace or selection.resource):
        return None
    namespaces: Counter[str] = Counter()
    resources: Counter[str] = Counter()

    def count(key: bytes) -> bool:
        """Tallies every revision's key and keeps none: no index of the whole backup."""
        found = parse_key(key)
        if found is not None:
            if found.namespace:
                namespaces[found.namespace] += 1
            if not selection.namespace or found.namespace == selection.namespace:
                resources[found.resource] += 1
        return False

    given = resolve_set_input(local, shown)
    if given.snapshot is None:
        return None
    try:  # checked in full already by the pass that picked nothing
        read_status(given.snapshot, length=given.snapshot.stat().st_size - TRAILER,
                    visit=KeyIndex(count).visit)
    except BoltFormatError:
        return None
    if selection.namespace and selection.namespace not in namespaces:
        close = difflib.get_close_matches(selection.namespace, namespaces, n=3)
        return (f"the backup has no namespace {selection.namespace!r}"
                + (f"; did you mean {' or '.join(close)}?" if close else
                   f" ({len(namespaces)} namespaces: `snapshot ls {shown} --resource "
                   "namespaces` lists them)"))
    if selection.resource and selection.resource not in resources:
        where = f" in namespace {selection.namespace}" if selection.namespace else ""
        close = difflib.get_close_matches(selection.resource, resources, n=3, cutoff=0.5)
        held = ", ".join(r for r, _ in resources.most_common(12))
        return (f"no resource {selection.resource!r}{where}"
                + (f"; did you mean {' or '.join(close)}?" if close else "")
                + f" It holds: {held}")
    return None
