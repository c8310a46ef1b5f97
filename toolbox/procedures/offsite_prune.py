"""`backup prune s3://… --keep N [--keep-days D]`: remove old sets from a store with local
`--keep`'s floor: never below N complete (verified) sets, never the newest, never a set one of
whose objects is under Object Lock retention; unfinished uploads (no manifest) go once they
are older than a day. The manifest goes first, so a set half-deleted by a failure is an
unfinished upload, never a listed set missing a file."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from toolbox import log
from toolbox.context import Context
from toolbox.errors import InvalidInput
from toolbox.report import Report
from toolbox.store.s3 import Bucket
from toolbox.store.sets import StoredSet, list_sets, manifest_key
from toolbox.store.url import StoreUrl, parse_store_url

_log = log.get(__name__)

UNFINISHED_GRACE = dt.timedelta(hours=24)  # an upload in progress elsewhere is not touched


@dataclass(frozen=True)
class PruneRequest:
    url: str
    keep: int
    keep_days: float | None = None
    endpoint_url: str | None = None
    protect: tuple[str, ...] = ()    # sets never removed (the one just uploaded)


@dataclass(frozen=True)
class PrunePlan:
    location: StoreUrl
    doomed: tuple[StoredSet, ...]
    locked: tuple[tuple[str, str], ...]       # (set, retained until) kept by Object Lock
    unfinished: tuple[tuple[str, tuple[str, ...]], ...]  # (set, its keys)
    kept: int


@dataclass
class PruneResult:
    plan: PrunePlan
    dry_run: bool
    removed: list[str] = field(default_factory=list)

    def report(self) -> Report:
        p = self.plan
        verb = "would remove" if self.dry_run else "removed"
        names = [s.name for s in p.doomed] + [name for name, _ in p.unfinished]
        summary = (f"{verb} {len(p.doomed)} set(s) and {len(p.unfinished)} unfinished "
                   f"upload(s) from {p.location}" if names else
                   f"nothing to prune in {p.location}")
        return Report(
            "backup.pruned", f"{summary}; {p.kept} complete set(s) kept",
            {"location": str(p.location), "dry_run": self.dry_run, "removed": names,
             "kept": p.kept, "locked": [{"set": s, "until": u} for s, u in p.locked]},
            details=[f"{verb} {name}" for name in names]
            + [f"kept {s}: under Object Lock until {u}" for s, u in p.locked])


def plan(request: PruneRequest, bucket: Bucket, now: dt.datetime | None = None
         ) -> PrunePlan:
    """`now`: the clock the ages are taken against (a test's later one)."""
    location = parse_store_url(request.url)
    if location.set_name:
        raise InvalidInput(f"{request.url} names one set; prune works on a prefix",
                           next_step=f"ocp-recovery backup prune {location.location} --keep N")
    if request.keep < 1:
        raise InvalidInput("--keep must be at least 1 (the newest set is never removed)",
                           next_step="e.g. --keep 7")
    now = now or dt.datetime.now(dt.UTC)
    listing = list_sets(bucket, location)
    candidates = listing.complete[:-request.keep] if len(listing.complete) > request.keep \
        else []
    if request.keep_days is not None:
        young = now - dt.timedelta(days=request.keep_days)
        candidates = [s for s in candidates if s.created is None or s.created < young]
    candidates = [s for s in candidates if s.name not in request.protect]
    doomed, locked = [], []
    for stored in candidates:
        until = max((u for f in stored.files
                     if (u := bucket.retained_until(f.key)) is not None), default=None)
        if until is None:
            doomed.append(stored)
        else:
            locked.append((stored.name, until.isoformat(timespec="seconds")))
    unfinished = []
    for name, objects in listing.incomplete.items():
        if max(o.modified for o in objects) >= now - UNFINISHED_GRACE:
            continue
        # An upload with --lock-days killed before its manifest: the store refuses to
        # delete its objects until then.
        until = max((u for o in objects if (u := bucket.retained_until(o.key)) is not None),
                    default=None)
        if until is None:
            unfinished.append((name, tuple(o.key for o in objects)))
        else:
            locked.append((name, until.isoformat(timespec="seconds")))
    return PrunePlan(location, tuple(doomed), tuple(locked), tuple(unfinished),
                     len(listing.complete) - len(doomed))


def connect(ctx: Context, request: PruneRequest) -> Bucket:
    return Bucket.connect(parse_store_url(request.url).bucket, request.endpoint_url,
                          ctx.aws_region)


def prune_store(bucket: Bucket, request: PruneRequest) -> PruneResult:
    """Plan and remove at once: after a backup's upload (`--keep-remote`), like local --keep."""
    return execute(bucket, plan(request, bucket))


def execute(bucket: Bucket, pruning: PrunePlan) -> PruneResult:
    result = PruneResult(pruning, dry_run=False)
    for stored in pruning.doomed:
        bucket.delete_all_versions([manifest_key(pruning.location, stored.name)])
        bucket.delete_all_versions([f.key for f in stored.files])
        result.removed.append(stored.name)
        _log.info("backup.prune.removed", url=str(stored.url))
    for name, keys in pruning.unfinished:
        bucket.delete_all_versions(list(keys))
        result.removed.append(name)
    return result
