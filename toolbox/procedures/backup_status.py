"""`backup status DIR|s3://… --max-age 26h`: is the newest verified backup set fresh? For a
monitoring check and for the operator before maintenance. Built on `backup ls`'s listing:
the newest verified set (in a directory: with its manifest; on a store: complete, its
manifest read), its age against the limit, and every newer set passed over and why."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass, field

from toolbox.context import Context
from toolbox.errors import InvalidInput
from toolbox.host.backups import timestamp_time
from toolbox.host.files import human_bytes
from toolbox.procedures.backup_list import ListedSet, Listing
from toolbox.procedures.backup_list import run as list_sets
from toolbox.report import Report
from toolbox.store.sets import parse_time
from toolbox.store.url import is_store_url

HOST_BACKUPS = "/var/lib/ocp-recovery/backups"  # where the CronJob writes (manifests/backup)
_DURATION = re.compile(r"^(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?\Z")
_UNIT_SECONDS = (86400, 3600, 60, 1)


def parse_max_age(text: str) -> int:
    """`26h`, `90m`, `2d`, `1d12h` (and seconds, `30s`) -> seconds."""
    match = _DURATION.match(text.strip().lower())
    seconds = sum(int(n) * unit for n, unit in zip(match.groups(), _UNIT_SECONDS, strict=True)
                  if n) if match else 0
    if seconds <= 0:  # no match, "", or 0h: a limit every backup fails
        raise InvalidInput(f"--max-age {text!r} is not a duration above 0 in days, hours "
                           "or minutes",
                           next_step="give it as 26h, 90m, 2d or 1d12h, e.g. "
                           "`--max-age 26h` (the CronJob runs every 6 hours)")
    return seconds


def human_duration(seconds: float) -> str:
    """3h12m, 31h, 45m, 20s: hours, not days, to compare with a limit like 26h."""
    whole = int(seconds)
    if whole < 60:
        return f"{max(whole, 0)}s"
    hours, minutes = divmod(whole // 60, 60)
    if not hours:
        return f"{minutes}m"
    return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"


@dataclass
class BackupStatus:
    where: str
    max_age: str                  # as given, for the operator's line
    max_age_seconds: int
    newest: ListedSet | None      # the newest verified set
    age_seconds: int | None
    # newer than `newest` (every set when there is none), passed over:
    unverified: list[str] = field(default_factory=list)   # a snapshot without its manifest
    incomplete: list[str] = field(default_factory=list)   # no snapshot / an unfinished upload
    damaged: dict[str, str] = field(default_factory=dict)  # store: its manifest unreadable

    @property
    def fresh(self) -> bool:
        return self.age_seconds is not None and self.age_seconds <= self.max_age_seconds

    @property
    def reason(self) -> str | None:
        if self.fresh:
            return None
        return "none" if self.newest is None else "stale"

    def report(self) -> Report:
        return Report("backup.status", self._line(), {
            "where": self.where, "fresh": self.fresh, "reason": self.reason,
            "age_seconds": self.age_seconds, "max_age_seconds": self.max_age_seconds,
            "newest": asdict(self.newest) if self.newest else None,
            "skipped": {"unverified": self.unverified, "incomplete": self.incomplete,
                        "damaged": [{"name": n, "problem": p} for n, p in self.damaged.items()]},
        })

    def _line(self) -> str:
        skipped = self._skipped()
        if self.newest is None or self.age_seconds is None:
            return f"STALE: no verified backup in {self.where}{skipped}; {self._advice()}"
        s = self.newest
        facts = ", ".join([
            human_bytes(s.snapshot_bytes) if s.snapshot_bytes is not None else "size unknown",
            f"revision {s.revision if s.revision is not None else '?'}",
            "off-site" if s.offsite else "NOT off-site"])
        said = (f"newest verified backup {s.name} is {human_duration(self.age_seconds)} old "
                f"(limit {self.max_age})")
        if self.fresh:
            return f"fresh: {said}, {facts}{skipped}"
        return f"STALE: {said}; {facts}{skipped}; {self._advice()}"

    def _skipped(self) -> str:
        parts = [f"{len(names)} {kind} ({', '.join(names)})"
                 for kind, names in (("unverified", self.unverified),
                                     ("incomplete", self.incomplete),
                                     ("damaged", list(self.damaged)))
                 if names]
        if not parts:
            return ""
        return (f"; newer set(s) skipped: {', '.join(parts)}" if self.newest else
                f" (skipped: {', '.join(parts)})")

    def _advice(self) -> str:
        make = (f"`ocp-recovery backup push {HOST_BACKUPS} {self.where} -r age1…`"
                if is_store_url(self.where) else f"`ocp-recovery backup {self.where}`")
        return f"run {make} now, and check the CronJob: `oc -n ocp-recovery get jobs`"


def run(ctx: Context, where: str, max_age: str, endpoint_url: str | None = None
        ) -> BackupStatus:
    """The status: stale or none is a result (the command exits 17 on it), not an error."""
    max_age_seconds = parse_max_age(max_age)
    if not is_store_url(where) and not ctx.paths.host(where).is_dir():
        # `backup ls` shows no sets for a missing directory; a check must not read that as
        # "none" when the path is wrong.
        raise InvalidInput(f"{where} is not a directory",
                           next_step=f"give the directory the backups are written to, e.g. "
                           f"{HOST_BACKUPS} (the CronJob's)")
    return _status(list_sets(ctx, where, endpoint_url), max_age, max_age_seconds)


def _status(listing: Listing, max_age: str, max_age_seconds: int) -> BackupStatus:
    verified = [s for s in listing.sets if s.verified]
    newest = verified[-1] if verified else None

    def newer(names: list[str]) -> list[str]:  # set names are timestamps: they sort by age
        return sorted(n for n in names if newest is None or n > newest.name)

    age = None
    if newest is not None:
        created = parse_time(newest.created) or timestamp_time(newest.name)
        age = int((dt.datetime.now(dt.UTC) - created).total_seconds())
    return BackupStatus(
        listing.where, max_age, max_age_seconds, newest, age,
        newer([s.name for s in listing.sets if not s.verified]), newer(listing.incomplete),
        {n: listing.damaged[n] for n in newer(list(listing.damaged))})

