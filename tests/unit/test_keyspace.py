"""The mvccpb.KeyValue decoder behind `snapshot ls/get` and `objects restore`, and the key
index's filter, on hand-made values: etcd's layout, the general one, and broken ones."""

from __future__ import annotations

import pytest

from toolbox.etcd.bbolt import BoltFormatError
from toolbox.etcd.keyspace import KeyIndex, _fields

REVISION = (5).to_bytes(8, "big") + b"_" + (0).to_bytes(8, "big")
TOMBSTONE = REVISION + b"t"


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out) + bytes([n])


def field(number: int, payload: int | bytes) -> bytes:
    if isinstance(payload, int):
        return varint(number << 3) + varint(payload)
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def key_value(key: bytes, value: bytes, *, create: int = 1_234_567, mod: int = 2_345_678,
              version: int = 3, lease: int = 0) -> bytes:
    """As etcd's marshaller writes it: fields in number order, zeros left out."""
    parts = [field(1, key), field(2, create), field(3, mod), field(4, version), field(5, value)]
    return b"".join(parts) + (field(6, lease) if lease else b"")


def decoded(kv: bytes) -> tuple[bytes, int, int, int, int, bytes, int]:
    f = _fields(kv)
    return (f.key, f.create_revision, f.mod_revision, f.version, f.lease, f.value,
            f.value_size)


def test_etcd_layout_decodes_every_field() -> None:
    kv = key_value(b"/registry/configmaps/a/b", b"x" * 300, lease=7_000_000_000_000)
    assert decoded(kv) == (b"/registry/configmaps/a/b", 1_234_567, 2_345_678, 3,
                                  7_000_000_000_000, b"x" * 300, 300)


def test_other_order_long_tags_and_unknown_fields_decode_the_same() -> None:
    # a long key (two-byte length), field 4 left out (zero), an unknown varint field 9 and
    # an unknown bytes field 20 (two-byte tag), the lease before the value
    key = b"/k" * 100
    kv = (field(3, 9) + field(9, 1) + field(20, b"ignored") + field(6, 2) + field(1, key)
          + field(5, b"v") + field(2, 8))
    assert decoded(kv) == (key, 8, 9, 0, 2, b"v", 1)


def test_the_head_of_a_longer_value_gives_what_is_there() -> None:
    kv = key_value(b"/k", b"v" * 5000)
    decoded = _fields(kv[:100], whole=False)
    assert (decoded.key, decoded.value_size, decoded.value) == (b"/k", 5000, kv[len(kv) - 5000:100])
    with pytest.raises(BoltFormatError, match="field 5 runs past its end"):
        _fields(kv[:100])


@pytest.mark.parametrize(("kv", "message"), [
    pytest.param(field(1, b"/key")[:-1], "field 1 runs past its end", id="truncated-key"),
    pytest.param(b"\x0a\x02/k\x10", "bad varint", id="varint-cut-off"),
    pytest.param(b"\x0a\x02/k\x10" + b"\xff" * 10 + b"\x01", "bad varint", id="varint-too-long"),
    pytest.param(b"\x0a\x02/k\x0d\x00\x00\x00\x00", "wire type 5 at byte 5", id="fixed32"),
])
def test_a_broken_key_value_is_a_format_error(kv: bytes, message: str) -> None:
    with pytest.raises(BoltFormatError, match=message):
        _fields(kv)


def test_the_index_keeps_the_newest_put_of_wanted_keys_and_drops_deleted_ones() -> None:
    index = KeyIndex(lambda key: key.startswith(b"/registry/configmaps/"))
    kept, deleted, other = (b"/registry/configmaps/a/kept", b"/registry/configmaps/a/gone",
                            b"/registry/secrets/a/other")
    for key in (kept, deleted, other):
        kv = key_value(key, b"old")
        index.visit(REVISION, kv, 100, len(kv))
    newest = key_value(kept, b"new", version=4)
    index.visit(REVISION, newest, 200, len(newest))
    tombstone = field(1, deleted)  # what etcd stores at a deletion: the key alone
    index.visit(TOMBSTONE, tombstone, 300, len(tombstone))
    assert list(index.found) == [kept]
    live = index.found[kept]
    assert (live.version, live.head, live.kv_offset, live.size) == (4, b"new", 200, 3)
