"""Text formats: the etcd env file, backup set names, the snapshot trailer hasher, the
snapshot stream's messages."""

import hashlib
from pathlib import Path

import pytest
from etcd3.etcdrpc import rpc_pb2 as rpc
from hypothesis import given
from hypothesis import strategies as st

from toolbox.errors import IntegrityError
from toolbox.etcd.client import snapshot_blob
from toolbox.etcd.cluster import EnvFile, parse_env_file
from toolbox.etcd.snapshot import _TrailerHasher
from toolbox.host.backups import find_backup_sets, new_timestamp


def test_env_file_as_43_member_add_left_it() -> None:
    text = (
        'export ETCD_DISCOVERY_SRV=example.com\nETCD_IPV4_ADDRESS=10.0.0.5\n'
        'ETCD_DNS_NAME=etcd-1.example.com\n\n\n#[recover]\n'
        'ETCD_NAME="etcd-member-m1"\n'
        'ETCD_INITIAL_CLUSTER="a=https://etcd-0.example.com:2380,etcd-member-m1=https://etcd-1.example.com:2380"\n'
        'ETCD_INITIAL_CLUSTER_STATE="existing"\n')
    env = parse_env_file(text)
    assert env.exported == {"ETCD_DISCOVERY_SRV": "example.com"}
    assert env.get("ETCD_INITIAL_CLUSTER_STATE") == "existing"
    assert env.get("ETCD_INITIAL_CLUSTER", ).startswith("a=https://etcd-0")
    assert env.get("ETCD_NAME") == "etcd-member-m1"


def test_later_line_wins_and_changes_export() -> None:
    env = parse_env_file("export A=1\nA=2\n")
    assert env.exported == {} and env.plain == {"A": "2"}


values = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=40)
names = st.from_regex(r"[A-Z][A-Z0-9_]{0,15}", fullmatch=True)


@given(st.dictionaries(names, values, max_size=6), st.dictionaries(names, values, max_size=6))
def test_env_file_round_trips(exported: dict[str, str], plain: dict[str, str]) -> None:
    plain = {k: v for k, v in plain.items() if k not in exported}
    env = EnvFile(dict(exported), dict(plain))
    back = parse_env_file(env.render())
    assert back.exported == exported and back.plain == plain


@given(st.binary(min_size=0, max_size=3000), st.lists(st.integers(1, 700), max_size=30),
       st.booleans())
def test_trailer_hasher_any_chunking(payload: bytes, cuts: list[int], views: bool) -> None:
    """Chunks as bytes, or as the memoryviews the snapshot stream hands over."""
    data = payload + hashlib.sha256(payload).digest()
    chunk = memoryview if views else bytes
    hasher, pos = _TrailerHasher(), 0
    for cut in cuts:
        hasher.update(chunk(data[pos:pos + cut]))
        pos += cut
    hasher.update(chunk(data[pos:]))
    assert hasher.trailer_matches()
    assert hasher.hash.hexdigest() == hashlib.sha256(payload).hexdigest()
    assert hasher.size == len(data)


def test_trailer_hasher_detects_a_flipped_byte() -> None:
    payload = bytes(range(256)) * 10
    data = bytearray(payload + hashlib.sha256(payload).digest())
    data[100] ^= 1
    hasher = _TrailerHasher()
    hasher.update(bytes(data))
    assert not hasher.trailer_matches()


def _version_field(text: bytes) -> bytes:
    """etcd 3.5's SnapshotResponse field 4 (version), which etcd3's older stubs lack."""
    return bytes([4 << 3 | 2, len(text)]) + text


@given(st.binary(max_size=70_000), st.integers(0, 2**40), st.integers(0, 2**62), st.booleans())
def test_snapshot_blob_is_the_messages_blob(blob: bytes, remaining: int, revision: int,
                                            versioned: bool) -> None:
    message = rpc.SnapshotResponse(remaining_bytes=remaining, blob=blob)
    message.header.revision = revision
    wire = message.SerializeToString() + (_version_field(b"3.5.0") if versioned else b"")
    assert bytes(snapshot_blob(wire)) == blob


@pytest.mark.parametrize("cut", [1, 2, 10, 1000])
def test_a_cut_snapshot_message_is_an_integrity_error(cut: int) -> None:
    wire = rpc.SnapshotResponse(remaining_bytes=7, blob=b"x" * 2000).SerializeToString()
    with pytest.raises(IntegrityError, match="not a SnapshotResponse"):
        snapshot_blob(wire[:-cut])


def test_backup_sets_pair_by_timestamp(tmp_path: Path) -> None:
    for name in ("snapshot_2020-04-17_170928.db", "static_kuberesources_2020-04-17_170928.tar.gz",
                 "snapshot_2020-04-18_090000.db", "static_kubernetes_2020-04-19_090000.tar.gz",
                 "backup_2020-04-18_090000.json", "snapshot_notes.txt"):
        (tmp_path / name).write_text("x")
    sets = find_backup_sets(tmp_path)
    assert [s.timestamp for s in sets] == ["2020-04-17_170928", "2020-04-18_090000",
                                           "2020-04-19_090000"]
    assert sets[0].snapshot and sets[0].archive and not sets[0].verified
    assert sets[1].verified and sets[1].archive is None
    assert sets[2].snapshot is None and sets[2].archive is not None


def test_new_timestamp_never_reuses_a_taken_second(tmp_path: Path) -> None:
    now = 1_700_000_000.0
    first = new_timestamp(tmp_path, now)
    (tmp_path / f"snapshot_{first}.db").write_text("x")
    second = new_timestamp(tmp_path, now)
    assert second > first


def test_a_new_set_never_sorts_before_the_newest_one_there(tmp_path: Path) -> None:
    """A clock stepped back (or a time zone change) must not name the new set older than the
    sets already there: retention keeps the newest names and would delete the new one."""
    later = new_timestamp(tmp_path, 1_700_003_600.0)
    (tmp_path / f"snapshot_{later}.db").write_text("x")
    stepped_back = new_timestamp(tmp_path, 1_700_000_000.0)
    assert stepped_back > later
