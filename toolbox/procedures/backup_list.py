"""`backup ls DIR|s3://…`: each backup set with its time, age, sizes, etcd revision, cluster
ID, whether it is verified and encrypted, and where it is."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

from toolbox.context import Context
from toolbox.host.backups import BackupSet, find_backup_sets, timestamp_time
from toolbox.host.files import human_bytes
from toolbox.report import Report
from toolbox.store.s3 import Bucket
from toolbox.store.sets import StoredSet, choose_set, list_sets, parse_time
from toolbox.store.url import is_store_url, parse_store_url


@dataclass(frozen=True)
class ListedSet:
    name: str
    created: str | None
    age_hours: float | None
    snapshot_bytes: int | None
    static_resources_bytes: int | None
    revision: int | None
    cluster_id: str | None
    verified: bool
    encrypted: bool
    offsite: bool                 # on a store; for a local set: it was uploaded and verified
    location: str
    recipients: tuple[str, ...] = ()


@dataclass
class Listing:
    where: str
    sets: list[ListedSet]
    incomplete: list[str]         # uploads without a manifest (store) / sets without one
    damaged: dict[str, str] = field(default_factory=dict)  # store: set -> why unreadable

    def report(self) -> Report:
        lines = [_line(s) for s in reversed(self.sets)]
        return Report(
            "backup.list", f"{len(self.sets)} backup set(s) in {self.where}"
            + (f"; newest {self.sets[-1].name}" if self.sets else
               " (check the path or prefix: `backup ls s3://BUCKET` lists the bucket's root)"
               if not self.incomplete and not self.damaged else ""),
            {"where": self.where, "sets": [asdict(s) for s in self.sets],
             "incomplete": self.incomplete,
             "damaged": [{"name": n, "problem": p} for n, p in self.damaged.items()]},
            details=lines + ([f"{len(self.incomplete)} incomplete: "
                              f"{', '.join(self.incomplete)} (never restored; `backup prune` "
                              "removes unfinished uploads after a day)"]
                             if self.incomplete else [])
            + ([f"{len(self.damaged)} damaged: {', '.join(self.damaged)} (the manifest "
                "cannot be read: never restored or counted; `backup verify` says why)"]
               if self.damaged else []))


def run(ctx: Context, where: str, endpoint_url: str | None = None) -> Listing:
    if is_store_url(where):
        url = parse_store_url(where)
        bucket = Bucket.connect(url.bucket, endpoint_url, ctx.aws_region)
        if url.set_name:  # one set: it, or a clear no (not its neighbours)
            return Listing(str(url), [_stored(choose_set(bucket, url))], [])
        listing = list_sets(bucket, url.location)
        return Listing(str(url.location), [_stored(s) for s in listing.complete],
                       sorted(listing.incomplete),
                       {name: exc.what for name, exc in listing.damaged.items()})
    directory = ctx.paths.host(where)
    sets = find_backup_sets(directory)
    return Listing(where, [_local(s, where) for s in sets if s.snapshot],
                   [s.timestamp for s in sets if not s.snapshot])


def _stored(stored: StoredSet) -> ListedSet:
    snapshot, archive = stored.file("snapshot"), stored.file("static_resources")
    etcd = stored.manifest.get("etcd", {})
    return ListedSet(stored.name, stored.manifest.get("created"), _age(stored.created),
                     snapshot.plaintext_size if snapshot else None,
                     archive.plaintext_size if archive else None,
                     etcd.get("revision"), etcd.get("cluster_id"), True, True, True,
                     str(stored.url), tuple(stored.offsite.get("recipients", ())))


def _local(backup: BackupSet, where: str) -> ListedSet:
    manifest = backup.read_manifest() or {}
    etcd = manifest.get("etcd", {})
    created = manifest.get("created") or \
        timestamp_time(backup.timestamp).isoformat(timespec="seconds")
    return ListedSet(backup.timestamp, created, _age(parse_time(created)),
                     backup.snapshot.stat().st_size if backup.snapshot else None,
                     backup.archive.stat().st_size if backup.archive else None,
                     etcd.get("revision"), etcd.get("cluster_id"), backup.verified, False,
                     bool(manifest.get("uploaded")), f"{where.rstrip('/')}/")


def _line(s: ListedSet) -> str:
    size = human_bytes(s.snapshot_bytes) if s.snapshot_bytes is not None else "?"
    age = f"{s.age_hours:.1f} h ago" if s.age_hours is not None else "age unknown"
    flags = ", ".join(f for f, on in (("verified", s.verified), ("encrypted", s.encrypted),
                                      ("off-site" if s.encrypted else "uploaded", s.offsite))
                     if on) or "NOT verified"
    to = f"  to {', '.join(r[:16] + '…' for r in s.recipients)}" if s.recipients else ""
    return (f"{s.name}  {age}  {size}  revision {s.revision if s.revision is not None else '?'}"
            f"  cluster {s.cluster_id or '?'}  {flags}{to}  {s.location}")


def _age(created: dt.datetime | None) -> float | None:
    if created is None:
        return None
    return round((dt.datetime.now(dt.UTC) - created).total_seconds() / 3600, 2)
