"""Broken and hostile snapshot files: `snapshot verify` names the problem, exits 6 for a
file that fails its integrity check (3 for a path that is not a snapshot at all), and
changes nothing on the host."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import pytest

from tests.reliability.hostile import (
    PAGE,
    TIMESTAMP,
    backup_set,
    bolt_db,
    flip,
    good,
    looping_bolt_db,
    master_root,
    refused,
    with_trailer,
)
from toolbox.etcd.bbolt import BoltFormatError, check_header, read_status
from toolbox.host.archive import file_sha256

pytestmark = pytest.mark.hostile("snapshot")

DB = bolt_db()
SNAPSHOT = with_trailer(DB)
TXID_IN_META = 16 + 48  # inside the checksummed meta body
RANDOM = random.Random(1234).randbytes(1 << 16)
TEXT = b"this is not a bbolt file\n" * 1000


@pytest.fixture
def host(tmp_path: Path) -> Path:
    return master_root(tmp_path / "host")


@pytest.mark.parametrize(("content", "message"), [
    pytest.param(SNAPSHOT[: len(SNAPSHOT) // 2], "sha256 trailer does not match", id="truncated"),
    pytest.param(SNAPSHOT[:-1], "sha256 trailer does not match", id="last-byte-cut"),
    pytest.param(flip(SNAPSHOT, 2 * PAGE + 40), "sha256 trailer does not match",
                 id="one-flipped-byte"),
    pytest.param(flip(SNAPSHOT, len(SNAPSHOT) - 1), "sha256 trailer does not match",
                 id="bad-sha256-trailer"),
    pytest.param(DB + b"\0" * 32, "sha256 trailer does not match", id="zeroed-trailer"),
    pytest.param(b"", "too short", id="zero-length"),
    pytest.param(SNAPSHOT[:31], "too short", id="31-bytes"),
    pytest.param(RANDOM, "sha256 trailer does not match", id="random-bytes"),
    pytest.param(TEXT, "sha256 trailer does not match", id="text-file"),
    # A trailer that matches proves only that the bytes are as written: the db is checked too.
    pytest.param(with_trailer(RANDOM), "not a valid etcd database: not a bbolt file: bad magic",
                 id="random-bytes-with-a-valid-trailer"),
    pytest.param(with_trailer(TEXT), "not a valid etcd database: not a bbolt file",
                 id="text-with-a-valid-trailer"),
    pytest.param(with_trailer(flip(DB, TXID_IN_META, PAGE + TXID_IN_META)), "bad checksum",
                 id="both-meta-pages-corrupt-with-a-valid-trailer"),
    pytest.param(with_trailer(DB[: 2 * PAGE]), "says the db spans 3 pages",
                 id="cut-db-with-a-recomputed-trailer"),
    pytest.param(with_trailer(looping_bolt_db()), "page 2 is referenced twice",
                 id="page-tree-that-loops"),
    pytest.param(with_trailer(flip(DB, 2 * PAGE + 8)), "bad page flags 0x58 at page 2",
                 id="corrupt-page-flags-with-a-valid-trailer"),
    pytest.param(DB, "--skip-hash-check", id="raw-data-dir-db-without-trailer"),
])
def test_a_bad_snapshot_file_is_refused(run_cli, host: Path, content: bytes,  # type: ignore[no-untyped-def]
                                        message: str) -> None:
    (host / "home/core/snapshot.db").write_bytes(content)
    err = refused(run_cli, host, ["snapshot", "verify", "/home/core/snapshot.db"], 6).stderr
    assert message in err and "snapshot.db" in err


def test_the_reader_refuses_random_bytes(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(RANDOM)
    with pytest.raises(
        BoltFormatError, match=r"not a bbolt file: bad magic 0x[0-9a-f]{8} at page 0"
    ):
        read_status(junk)
    with pytest.raises(BoltFormatError, match="not a bbolt file"):
        check_header(junk)


def test_the_reader_refuses_a_zero_length_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(BoltFormatError, match="too small"):
        read_status(empty)
    with pytest.raises(BoltFormatError, match="too small"):
        check_header(empty)


@pytest.mark.parametrize(("path", "message"), [
    ("/home/core/nothing-here.db", "does not exist"),
    ("/home/core", "holds no snapshot_<timestamp>.db"),
])
def test_a_path_that_is_not_a_snapshot_is_invalid_input(run_cli, host: Path, path: str,  # type: ignore[no-untyped-def]
                                                       message: str) -> None:
    assert message in refused(run_cli, host, ["snapshot", "verify", path], 3).stderr


def test_a_fifo_named_like_a_snapshot_is_named_as_such(run_cli, host: Path) -> None:  # type: ignore[no-untyped-def]
    os.mkfifo(host / "home/core/snapshot.db")
    err = refused(run_cli, host, ["snapshot", "verify", "/home/core/snapshot.db"], 3).stderr
    assert "not a regular file" in err or "not a file" in err


def test_a_backup_directory_holding_a_bad_pair(run_cli, host: Path) -> None:  # type: ignore[no-untyped-def]
    backups = host / "home/core/backup"
    backup_set(backups, timestamp="2020-04-16_090000")
    backup_set(backups, snapshot=flip(SNAPSHOT, 2 * PAGE + 40))
    err = refused(run_cli, host, ["snapshot", "verify", "/home/core/backup"], 6).stderr
    assert "1 of 2 backup set(s)" in err
    assert f"{TIMESTAMP}: " in err and "sha256 trailer does not match" in err
    assert "2020-04-16_090000" not in err  # the good set is not blamed


def _manifest(backups: Path, **changes: object) -> None:
    snapshot = backups / f"snapshot_{TIMESTAMP}.db"
    record = {"snapshot": {"db_sha256": hashlib.sha256(DB).hexdigest(),
                           "size": snapshot.stat().st_size},
              "static_resources": {"sha256": file_sha256(
                  backups / f"static_kuberesources_{TIMESTAMP}.tar.gz")}}
    for section, value in changes.items():
        record[section].update(value)  # type: ignore[attr-defined]
    (backups / f"backup_{TIMESTAMP}.json").write_text(json.dumps(record))


@pytest.mark.parametrize(("changes", "message"), [
    ({"snapshot": {"db_sha256": "0" * 64}}, "snapshot sha256 differs from the manifest"),
    ({"snapshot": {"size": 1}}, "snapshot size differs from the manifest"),
    ({"static_resources": {"sha256": "0" * 64}},
     f"static_kuberesources_{TIMESTAMP}.tar.gz sha256 differs from the manifest"),
])
def test_a_pair_that_differs_from_its_manifest(run_cli, host: Path, changes: dict,  # type: ignore[no-untyped-def, type-arg]
                                               message: str) -> None:
    backups = backup_set(host / "home/core/backup")
    _manifest(backups, **changes)
    assert message in refused(run_cli, host, ["snapshot", "verify", "/home/core/backup"],
                              6).stderr


def test_an_unreadable_manifest(run_cli, host: Path) -> None:  # type: ignore[no-untyped-def]
    backups = backup_set(host / "home/core/backup")
    (backups / f"backup_{TIMESTAMP}.json").write_text("{not json")
    assert f"backup_{TIMESTAMP}.json is unreadable" in refused(
        run_cli, host, ["snapshot", "verify", "/home/core/backup"], 6).stderr


def test_a_43_backup_with_a_truncated_archive(run_cli, host: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    archive = good(tmp_path / "a.tar.gz")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    backup_set(host / "home/core/backup", archive=cut)
    assert "not a readable gzip tar" in refused(
        run_cli, host, ["snapshot", "verify", "/home/core/backup"], 6).stderr
