"""`snapshot verify`: restorable or not, without etcd; hostile files refused clearly."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from toolbox.sandbox.cluster import Sandbox


@pytest.fixture(scope="module")
def backup_dir(sandbox: Sandbox) -> Path:
    from toolbox.procedures import backup
    from toolbox.sandbox.drill_report import master_context

    ctx = master_context(sandbox, 0, dict(os.environ))
    backup.run(ctx, backup.BackupRequest("/home/core/verify", progress=False))
    return sandbox.root(0) / "var/home/core/verify"


def verify(run_cli, sandbox: Sandbox, path: str, *extra: str, exit_code: int = 0):  # type: ignore[no-untyped-def]
    return run_cli(["--log-format", "console", "snapshot", "verify", path, *extra],
                   env=sandbox.env_vars(0, dict(os.environ)), exit_code=exit_code)


def copy_snapshot(backup_dir: Path, name: str) -> Path:
    [snapshot] = backup_dir.glob("snapshot_*.db")
    scratch = backup_dir.parent / "verify-cases"
    scratch.mkdir(exist_ok=True)
    target = scratch / name
    shutil.copyfile(snapshot, target)
    return target


def test_a_good_backup_directory(run_cli, sandbox: Sandbox, backup_dir: Path) -> None:
    out = verify(run_cli, sandbox, "/home/core/verify").stdout
    assert ": ok revision " in out and "archive ok" in out and "manifest matched" in out


def test_a_flipped_byte(run_cli, sandbox: Sandbox, backup_dir: Path) -> None:
    bad = copy_snapshot(backup_dir, "flipped.db")
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0x40
    bad.write_bytes(bytes(data))
    err = verify(run_cli, sandbox, "/home/core/verify-cases/flipped.db", exit_code=6).stderr
    assert "sha256 trailer does not match" in err


def test_a_truncated_file(run_cli, sandbox: Sandbox, backup_dir: Path) -> None:
    bad = copy_snapshot(backup_dir, "truncated.db")
    os.truncate(bad, bad.stat().st_size // 2)
    verify(run_cli, sandbox, "/home/core/verify-cases/truncated.db", exit_code=6)


def test_an_empty_file(run_cli, sandbox: Sandbox, backup_dir: Path) -> None:
    bad = copy_snapshot(backup_dir, "empty.db")
    bad.write_bytes(b"")
    assert "too short" in verify(run_cli, sandbox, "/home/core/verify-cases/empty.db",
                                 exit_code=6).stderr


def test_not_a_database(run_cli, sandbox: Sandbox, backup_dir: Path) -> None:
    import hashlib

    bad = copy_snapshot(backup_dir, "text.db")
    payload = b"this is not a bbolt file\n" * 1000
    bad.write_bytes(payload + hashlib.sha256(payload).digest())  # a valid trailer, bad body
    assert "not a valid etcd database" in verify(
        run_cli, sandbox, "/home/core/verify-cases/text.db", exit_code=6).stderr


def test_raw_data_dir_db_needs_skip_hash_check(run_cli, sandbox: Sandbox,
                                               backup_dir: Path) -> None:
    raw = copy_snapshot(backup_dir, "raw.db")
    os.truncate(raw, raw.stat().st_size - 32)  # a db without trailer, as in member/snap/db
    err = verify(run_cli, sandbox, "/home/core/verify-cases/raw.db", exit_code=6).stderr
    assert "--skip-hash-check" in err
    out = verify(run_cli, sandbox, "/home/core/verify-cases/raw.db", "--skip-hash-check").stdout
    assert ": ok revision " in out


def test_manifest_mismatch_is_caught(run_cli, sandbox: Sandbox, backup_dir: Path) -> None:
    tampered = backup_dir.parent / "verify-tampered"
    shutil.copytree(backup_dir, tampered)
    [manifest] = tampered.glob("backup_*.json")
    data = json.loads(manifest.read_text())
    data["static_resources"]["sha256"] = "0" * 64
    manifest.write_text(json.dumps(data))
    err = verify(run_cli, sandbox, "/home/core/verify-tampered", exit_code=6).stderr
    assert "sha256 differs from the manifest" in err


def test_missing_path(run_cli, sandbox: Sandbox, backup_dir: Path) -> None:
    verify(run_cli, sandbox, "/home/core/nothing-here", exit_code=3)
