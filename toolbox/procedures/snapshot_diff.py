"""`snapshot diff BACKUP (BACKUP2 | --live)`: which keys were added, removed and changed
between a backup and another backup or the live cluster, by resource and namespace. Against
the live cluster only keys and mod revisions are read (a keys-only range): no value crosses
the wire."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from toolbox.context import Context
from toolbox.etcd.client import EtcdClient, resolve_tls
from toolbox.objects.backup import BackupObjects, Selection, why_nothing
from toolbox.objects.keys import parse_key
from toolbox.report import Report

ADDED, REMOVED, CHANGED = "added", "removed", "changed"
DETAIL_LINES = 200  # console lines of keys; --json has them all


@dataclass(frozen=True)
class KeyChange:
    change: str                     # added | removed | changed
    key: str
    resource: str | None
    namespace: str | None
    revision_before: int | None     # in BACKUP
    revision_after: int | None      # in BACKUP2 / live


@dataclass
class Diff:
    before: str
    after: str
    selection: Selection
    changes: list[KeyChange]
    why_nothing: str | None = None   # a selection that picked nothing on either side

    def report(self) -> Report:
        counts = Counter(c.change for c in self.changes)
        groups = Counter((c.resource or "(other keys)", c.namespace or "-", c.change)
                         for c in self.changes)
        by_group: dict[tuple[str, str], Counter[str]] = {}
        for (resource, namespace, change), n in groups.items():
            by_group.setdefault((resource, namespace), Counter())[change] = n
        details = [f"{'RESOURCE':<40} {'NAMESPACE':<30} ADDED  REMOVED  CHANGED"]
        details += [f"{r:<40} {ns:<30} {c[ADDED]:>5}  {c[REMOVED]:>7}  {c[CHANGED]:>7}"
                    for (r, ns), c in sorted(by_group.items())]
        marks = {ADDED: "+", REMOVED: "-", CHANGED: "~"}
        details += [f"{marks[c.change]} {c.key}" for c in self.changes[:DETAIL_LINES]]
        if len(self.changes) > DETAIL_LINES:
            details.append(f"… {len(self.changes) - DETAIL_LINES} more (all of them with "
                           "--json)")
        summary = (f"{self.before} -> {self.after} ({self.selection.describe()}): "
                   f"{counts[ADDED]} added, {counts[REMOVED]} removed, {counts[CHANGED]} "
                   "changed")
        return Report("snapshot.diff", summary,
                      {"before": self.before, "after": self.after,
                       "counts": {k: counts[k] for k in (ADDED, REMOVED, CHANGED)},
                       "changes": [c.__dict__ for c in self.changes]},
                      details=details if self.changes else [],
                      warnings=[self.why_nothing] if self.why_nothing else [])


def run(ctx: Context, backup: str, other: str | None, selection: Selection) -> Diff:
    before = BackupObjects.open(ctx.paths.host(backup), backup, selection)
    old = {k: v.mod_revision for k, v in before.keyspace.keys.items()}
    if other is not None:
        after = BackupObjects.open(ctx.paths.host(other), other, selection)
        new = {k: v.mod_revision for k, v in after.keyspace.keys.items()}
        label = other
    else:
        new = live_revisions(ctx, selection)
        label = "live"
    hint = why_nothing(ctx.paths.host(backup), backup, selection) \
        if not old and not new else None
    return Diff(backup, label, selection, compare(old, new), hint)


def live_revisions(ctx: Context, selection: Selection) -> dict[bytes, int]:
    """Key -> mod revision of the live keys the selection picks (keys only)."""
    match = selection.matcher()
    prefix = (selection.prefix or "").encode()
    with EtcdClient.connect(ctx, resolve_tls(ctx)) as client:
        return {key: revision for key, revision in client.keys(prefix)
                if match is None or match(key)}


def compare(old: dict[bytes, int], new: dict[bytes, int]) -> list[KeyChange]:
    changes = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        change = ADDED if before is None else REMOVED if after is None else CHANGED
        found = parse_key(key)
        changes.append(KeyChange(change, key.decode("utf-8", "backslashreplace"),
                                 found.resource if found else None,
                                 (found.namespace or None) if found else None, before, after))
    return changes
