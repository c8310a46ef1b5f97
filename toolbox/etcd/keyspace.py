"""The keys a snapshot file holds, offline: each live key's newest revision, and its value.

bucket "key" of etcd's bbolt file maps a revision (8-byte main, '_', 8-byte sub, and 't' for
a deletion) to an mvccpb.KeyValue {key = 1, create_revision = 2, mod_revision = 3,
version = 4, value = 5, lease = 6}. Entries come in revision order, so a key's current value
is the last put seen, unless a deletion follows it. One pass of the checking bbolt walker
(etcd/bbolt.py) does it; per key only its location in the file is kept, never its value, so
memory grows with the number of keys, not with the size of the database.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from toolbox.etcd import bbolt

#: Enough of a value to tell how it is encoded (`k8s\0`, `{`, `k8s:enc:aescbc:v1:<name>:`).
VALUE_HEAD = 64


@dataclass(frozen=True, slots=True)
class LiveKey:
    key: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int
    size: int            # bytes of the value
    head: bytes          # the value's first VALUE_HEAD bytes
    # where the whole mvccpb.KeyValue lies in the file, or the KeyValue itself when it came
    # from an inline bucket (tiny databases only)
    kv_offset: int | None
    kv_size: int
    inline: bytes | None

    @property
    def key_text(self) -> str:
        return self.key.decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class Keyspace:
    path: Path
    db_length: int
    status: bbolt.BoltStatus
    keys: dict[bytes, LiveKey]   # in key order

    def value(self, live: LiveKey) -> bytes:
        """The key's whole current value, read from the file."""
        if live.inline is not None:
            kv = live.inline
        else:
            assert live.kv_offset is not None
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                kv = os.pread(fd, live.kv_size, live.kv_offset)
            finally:
                os.close(fd)
            if len(kv) != live.kv_size:
                raise bbolt.BoltFormatError(f"{self.path} changed while it was read")
        return _fields(kv).value


class KeyIndex:
    """The visitor that builds a Keyspace while the bbolt walker checks the file;
    `wanted` picks the keys to keep (default: all), so memory holds only those."""

    def __init__(self, wanted: Callable[[bytes], bool] | None = None) -> None:
        self.wanted = wanted
        self.found: dict[bytes, LiveKey] = {}

    def visit(self, revision: bytes, kv: bytes, offset: int | None, size: int) -> None:
        tombstone = len(revision) == 18  # the key was deleted at this revision
        if self.wanted is not None or tombstone:
            # The key alone first: most keys are not wanted, and a tombstone needs no more.
            # etcd writes it first, its length in one byte for nearly every key.
            if len(kv) > 1 and kv[0] == 0x0A and kv[1] < 0x80 and 2 + kv[1] <= len(kv):
                key = kv[2:2 + kv[1]]
            else:
                key = _fields(kv, whole=len(kv) == size).key
            if self.wanted is not None and not self.wanted(key):
                return
            if tombstone:
                self.found.pop(key, None)
                return
        fields = _fields(kv, whole=len(kv) == size)
        self.found[fields.key] = LiveKey(
            fields.key, fields.create_revision, fields.mod_revision, fields.version,
            fields.lease, fields.value_size, fields.value[:VALUE_HEAD], offset, size,
            kv if offset is None else None)

    def keyspace(self, path: Path, db_length: int, status: bbolt.BoltStatus) -> Keyspace:
        return Keyspace(path, db_length, status, dict(sorted(self.found.items())))


def read_keyspace(path: Path, *, db_length: int,
                  wanted: Callable[[bytes], bool] | None = None) -> Keyspace:
    """Walk (and check) the db once. Raises bbolt.BoltFormatError for a malformed file or
    KeyValue."""
    index = KeyIndex(wanted)
    status = bbolt.read_status(path, length=db_length, visit=index.visit)
    return index.keyspace(path, db_length, status)


class _KeyValue(NamedTuple):  # built for every revision: a frozen dataclass costs 3-6x
    key: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int
    value: bytes        # whole, or what of it `kv` held
    value_size: int


def _fields(kv: bytes, *, whole: bool = True) -> _KeyValue:
    """Decode an mvccpb.KeyValue. With whole=False, `kv` is the start of a longer value:
    the value field may run past its end, and what is there of it is returned."""
    create_revision = mod_revision = version = lease = value_size = 0
    key = value = b""
    at, end = 0, len(kv)
    while at < end:
        # Tags and most numbers are one byte: read inline, varint() only for longer ones
        # (this runs for every revision of every key).
        tag = kv[at]
        if tag < 0x80:
            at += 1
        else:
            tag, at = varint(kv, at)
        number, wire = tag >> 3, tag & 7
        if wire != 0 and wire != 2:
            raise bbolt.BoltFormatError(
                f"a value in bucket 'key' is not an etcd KeyValue: wire type {wire} at byte {at}")
        if at < end and kv[at] < 0x80:
            scalar = kv[at]
            at += 1
        else:
            scalar, at = varint(kv, at)
        if wire == 0:
            if number == 2:
                create_revision = scalar
            elif number == 3:
                mod_revision = scalar
            elif number == 4:
                version = scalar
            elif number == 6:
                lease = scalar
            continue
        if at + scalar > end and (whole or number != 5):
            raise bbolt.BoltFormatError(
                f"a value in bucket 'key' is not an etcd KeyValue: field {number} runs "
                "past its end")
        if number == 1:
            key = kv[at:at + scalar]
        elif number == 5:
            value, value_size = kv[at:at + scalar], scalar
        at += scalar
    return _KeyValue(key, create_revision, mod_revision, version, lease, value, value_size)


def varint(data: bytes, at: int) -> tuple[int, int]:
    """The protobuf varint at `at`: (value, where the next field starts)."""
    result = shift = 0
    while at < len(data):
        byte = data[at]
        at += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, at
        shift += 7
        if shift > 63:
            break
    raise bbolt.BoltFormatError("a value in bucket 'key' is not an etcd KeyValue: bad varint")
