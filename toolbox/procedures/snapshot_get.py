"""`snapshot get BACKUP KEY`: one object as the backup holds it, offline: JSON-stored objects
as they are, protobuf-stored ones decoded (ObjectMeta always; ConfigMap, Secret and Namespace
in full), values encrypted at rest decrypted with the keys archived in the same set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from toolbox.context import Context
from toolbox.errors import InvalidInput
from toolbox.objects.backup import BackupObjects, Selection
from toolbox.procedures.snapshot_list import ListedKey, listed


@dataclass(frozen=True)
class ShownObject:
    key: ListedKey
    stored: bytes                  # the value exactly as etcd holds it (for -o raw)
    document: dict[str, Any]       # what -o json|yaml prints
    complete: bool                 # False: only the metadata of a protobuf kind was decoded


def run(ctx: Context, backup: str, key: str, *, decode: bool = True) -> ShownObject:
    if not key.startswith("/"):
        raise InvalidInput(f"{key!r} is not an etcd key (they start with /, e.g. "
                           "/kubernetes.io/configmaps/NAMESPACE/NAME)",
                           next_step=f"find it: ocp-recovery snapshot ls {backup} "
                           "--namespace NAMESPACE")
    opened = BackupObjects.open(ctx.paths.host(backup), backup, Selection(keys=(key,)))
    entry = opened.entry(key)
    stored = opened.keyspace.value(entry.live)
    if not decode:
        return ShownObject(listed(entry), stored, {}, True)
    decoded = opened.decoded(entry)
    document = decoded.document
    if isinstance(document.get("metadata"), dict):
        # kube-apiserver stores none and serves the key's mod revision: as `oc get` shows it
        document["metadata"]["resourceVersion"] = str(entry.live.mod_revision)
    return ShownObject(listed(entry), stored, document, decoded.complete)

