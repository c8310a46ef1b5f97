"""`snapshot ls BACKUP`: every live key a backup holds, offline, with its object's resource,
namespace and name, mod revision, size, and how the value is stored (protobuf, JSON,
encrypted at rest). From the snapshot file alone: no etcd, one checking pass."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

from toolbox.context import Context
from toolbox.host.files import human_bytes
from toolbox.objects.backup import BackupObjects, Entry, Selection, why_nothing
from toolbox.report import Report


@dataclass(frozen=True)
class ListedKey:
    key: str
    resource: str | None
    namespace: str | None
    name: str | None
    mod_revision: int
    size: int
    encoding: str


@dataclass
class KeyListing:
    backup: str
    revision: int
    selection: Selection
    keys: list[ListedKey]
    why_nothing: str | None = None   # a selection that picked nothing: its likely typo

    def report(self) -> Report:
        encodings = Counter(k.encoding for k in self.keys)
        total = sum(k.size for k in self.keys)
        kinds = "; " + ", ".join(f"{n} {e}" for e, n in sorted(encodings.items())) \
            if encodings else ""
        return Report(
            "snapshot.list",
            f"{len(self.keys)} key(s), {human_bytes(total)} of values, in {self.backup} at "
            f"revision {self.revision} ({self.selection.describe()}{kinds})",
            {"backup": self.backup, "revision": self.revision,
             "keys": [asdict(k) for k in self.keys]},
            warnings=[self.why_nothing] if self.why_nothing else [],
            next=[] if self.keys else [f"list every key: ocp-recovery snapshot ls "
                                       f"{self.backup}"])

    def table(self) -> list[str]:
        """One line per key, as `kubectl get` aligns them (the console form)."""
        rows = [("RESOURCE", "NAMESPACE", "NAME", "REVISION", "SIZE", "ENCODING")]
        rows += [(k.resource or "-", k.namespace or "-", k.name or k.key, str(k.mod_revision),
                  str(k.size), k.encoding) for k in self.keys]
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        return ["   ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "   " + r[5]
                for r in rows]


def run(ctx: Context, backup: str, selection: Selection) -> KeyListing:
    local = ctx.paths.host(backup)
    opened = BackupObjects.open(local, backup, selection)
    keys = [listed(e) for e in opened.entries()]
    return KeyListing(backup, opened.report.revision, selection, keys,
                      None if keys else why_nothing(local, backup, selection))


def listed(entry: Entry) -> ListedKey:
    found, live = entry.object, entry.live
    return ListedKey(live.key_text, found.resource if found else None,
                     (found.namespace or None) if found else None,
                     found.name if found else None, live.mod_revision, live.size,
                     entry.encoding)
