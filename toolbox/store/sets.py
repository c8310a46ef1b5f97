"""A backup set on an object store: `PREFIX/<timestamp>/` holds the set's files encrypted
(`snapshot_<ts>.db.age`, `static_kuberesources_<ts>.tar.gz.age`) and, uploaded last, its
manifest `backup_<ts>.json`: the commit marker. A set without its manifest is an incomplete
upload: never listed, restored or counted, and removed by prune after a grace period."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from toolbox.errors import IntegrityError, InvalidInput
from toolbox.host.backups import set_names
from toolbox.store.encryption import AGE_SUFFIX, HashingReader, HashingWriter, Writer, decrypt
from toolbox.store.s3 import Bucket, StoredObject
from toolbox.store.url import SET_NAME, StoreUrl

OFFSITE_FORMAT = 1
MANIFEST_LIMIT = 1 << 20   # ours are a few KiB, members and all
ROLES = ("static_resources", "snapshot")  # upload order; the manifest follows them


@dataclass(frozen=True)
class StoredFile:
    role: str               # "snapshot" or "static_resources"
    name: str               # the file's name on a host: snapshot_<ts>.db
    key: str
    size: int               # of the ciphertext, as stored
    sha256: str             # of the ciphertext
    plaintext_size: int
    plaintext_sha256: str

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key, "size": self.size, "sha256": self.sha256,
                "plaintext_size": self.plaintext_size,
                "plaintext_sha256": self.plaintext_sha256}


@dataclass(frozen=True)
class StoredSet:
    url: StoreUrl            # names this set
    manifest: dict[str, Any]  # the local manifest, plus "offsite"
    files: tuple[StoredFile, ...]

    @property
    def name(self) -> str:
        assert self.url.set_name is not None
        return self.url.set_name

    @property
    def offsite(self) -> dict[str, Any]:
        value: dict[str, Any] = self.manifest["offsite"]
        return value

    def file(self, role: str) -> StoredFile | None:
        return next((f for f in self.files if f.role == role), None)

    @property
    def created(self) -> dt.datetime | None:
        return parse_time(self.manifest.get("created"))


@dataclass(frozen=True)
class StoreListing:
    complete: list[StoredSet]         # oldest first
    incomplete: dict[str, list[StoredObject]]  # set name -> what an unfinished upload left
    # set name -> why its manifest cannot be read (cut, a newer format, made up): never
    # restored or counted, and not removed (it may be evidence)
    damaged: dict[str, IntegrityError] = field(default_factory=dict)


def manifest_key(url: StoreUrl, set_name: str) -> str:
    return url.key(set_name, set_names(set_name)[2])


def object_key(url: StoreUrl, set_name: str, file_name: str) -> str:
    return url.key(set_name, file_name + AGE_SUFFIX)


def offsite_manifest(local: dict[str, Any], files: list[StoredFile], recipients: tuple[str, ...],
                     uploaded: dt.datetime, verified: dt.datetime,
                     retention: dict[str, str] | None) -> dict[str, Any]:
    return {**local, "offsite": {
        "format": OFFSITE_FORMAT, "encryption": "age", "recipients": list(recipients),
        "uploaded": uploaded.isoformat(timespec="seconds"),
        "verified": verified.isoformat(timespec="seconds"),
        "retention": retention, "files": {f.role: f.record() for f in files}}}


def _objects_by_set(bucket: Bucket, location: StoreUrl) -> dict[str, list[StoredObject]]:
    """One listing of the prefix: set name -> its objects, oldest set first."""
    by_set: dict[str, list[StoredObject]] = {}
    start = len(location.set_prefix)
    for stored in bucket.list_objects(location.set_prefix):
        name, slash, rest = stored.key[start:].partition("/")
        if slash and "/" not in rest and SET_NAME.match(name):
            by_set.setdefault(name, []).append(stored)
    return dict(sorted(by_set.items()))


def _committed(location: StoreUrl, name: str, objects: list[StoredObject]) -> bool:
    marker = manifest_key(location, name)
    return any(o.key == marker for o in objects)


def is_committed(bucket: Bucket, url: StoreUrl) -> bool:
    """Whether the set the URL names has its manifest on the store (one request)."""
    assert url.set_name is not None
    return bool(bucket.list_objects(manifest_key(url.location, url.set_name)))


def list_sets(bucket: Bucket, location: StoreUrl) -> StoreListing:
    complete, incomplete, damaged = [], {}, {}
    for name, objects in _objects_by_set(bucket, location).items():
        if _committed(location, name, objects):
            try:
                complete.append(read_set(bucket, location.with_set(name)))
            except IntegrityError as exc:  # one bad manifest must not hide the other sets
                damaged[name] = exc
        else:
            incomplete[name] = objects
    return StoreListing(complete, incomplete, damaged)


def read_set(bucket: Bucket, url: StoreUrl) -> StoredSet:
    assert url.set_name is not None
    key = manifest_key(url.location, url.set_name)
    raw = bucket.get_bytes(key, MANIFEST_LIMIT)
    try:
        manifest = json.loads(raw)
        offsite = manifest["offsite"]
        files = tuple(StoredFile(role, f["name"], f["key"], int(f["size"]), str(f["sha256"]),
                                 int(f["plaintext_size"]), str(f["plaintext_sha256"]))
                      for role, f in offsite["files"].items())
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise IntegrityError(f"the manifest s3://{bucket.name}/{key} is not one "
                             f"ocp-recovery wrote: {exc!r}",
                             state="unchanged: nothing was written on this host",
                             next_step=f"use another set (`ocp-recovery backup ls "
                             f"{url.location}`)") from exc
    if offsite.get("format") != OFFSITE_FORMAT or offsite.get("encryption") != "age":
        raise IntegrityError(f"the manifest s3://{bucket.name}/{key} has off-site format "
                             f"{offsite.get('format')!r}, which this toolbox does not read",
                             next_step="use the ocp-recovery version that wrote it")
    for f in files:
        # The name is where a fetch writes the file: only the set's own names, no path.
        if f.role not in ROLES or f.name not in _file_names(f.role, url.set_name) or \
                f.key != object_key(url.location, url.set_name, f.name):
            raise IntegrityError(f"the manifest s3://{bucket.name}/{key} names {f.name!r} "
                                 f"at {f.key!r} for {f.role}, outside its own set",
                                 next_step="use another set; keep this one for analysis")
    return StoredSet(url, manifest, files)


def _file_names(role: str, set_name: str) -> tuple[str, ...]:
    snapshot, archive, _ = set_names(set_name)
    # The guide's own spelling of the archive too, as a 4.3-made set has it.
    return (snapshot,) if role == "snapshot" else \
        (archive, f"static_kubernetes_{set_name}.tar.gz")


def choose_set(bucket: Bucket, url: StoreUrl) -> StoredSet:
    """The set the URL names, or the newest complete one under its prefix (refused when the
    newest of all is damaged: an older one is taken only by its name)."""
    if url.set_name:
        if not is_committed(bucket, url):
            raise InvalidInput(f"{url} is not a complete set on the store (no manifest: an "
                               "upload that never finished, or a typo)",
                               next_step=f"ocp-recovery backup ls {url.location}")
        return read_set(bucket, url)
    by_set = _objects_by_set(bucket, url)
    committed = [name for name, objects in by_set.items() if _committed(url, name, objects)]
    if not committed:
        raise InvalidInput(f"{url} holds no complete backup set"
                           + (f" ({len(by_set)} unfinished upload(s))" if by_set else ""),
                           next_step=f"check the URL with `ocp-recovery backup ls {url}`")
    # Only the newest manifest is read; a damaged one raises: an older set is taken only
    # by its name.
    return read_set(bucket, url.with_set(committed[-1]))


def decrypt_stored_file(bucket: Bucket, stored: StoredFile, target: Writer,
                        identities: list[Any],
                        progress: Callable[[int, int], None] | None = None) -> None:
    """Download, decrypt into `target` and check both hashes against the manifest. The
    caller discards what was written when this raises."""
    where = f"s3://{bucket.name}/{stored.key}"
    reader = bucket.open(stored.key)
    try:
        ciphertext = HashingReader(reader, progress, stored.size)
        plaintext = HashingWriter(target)
        try:
            decrypt(ciphertext, plaintext, identities, where)
        except InvalidInput:
            # age says "no matching keys" for a damaged recipient stanza too: the object's
            # own hash tells that from a wrong identity.
            while ciphertext.read(1 << 20):
                pass
            if (ciphertext.size, ciphertext.sha256.hexdigest()) != \
                    (stored.size, stored.sha256):
                raise _damaged(where, ciphertext.size, ciphertext.sha256.hexdigest(),
                               stored) from None
            raise
    finally:
        reader.close()
    # age authenticates each 64 KiB chunk, so a flipped or missing byte already failed above;
    # this catches a manifest that does not match what is stored (either may be the damage).
    if (ciphertext.size, ciphertext.sha256.hexdigest()) != (stored.size, stored.sha256):
        raise _damaged(where, ciphertext.size, ciphertext.sha256.hexdigest(), stored)
    if (plaintext.size, plaintext.sha256.hexdigest()) != \
            (stored.plaintext_size, stored.plaintext_sha256):
        raise IntegrityError(f"{where} decrypted to {plaintext.size} bytes that do not match "
                             "the manifest's plaintext size and sha256",
                             state="unchanged: what was decrypted from it was discarded",
                             next_step="use another set; keep this one for analysis")


def _damaged(where: str, size: int, sha256: str, stored: StoredFile) -> IntegrityError:
    return IntegrityError(f"{where} is {size} bytes with sha256 {sha256[:16]}…; the manifest "
                          f"records {stored.size} bytes, {stored.sha256[:16]}…",
                          state="unchanged: what was decrypted from it was discarded",
                          next_step="use another set; keep this one for analysis")


def parse_time(value: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
