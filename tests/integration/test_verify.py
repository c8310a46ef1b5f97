"""`snapshot verify`: restorable or not, without etcd; hostile files refused clearly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import assert_host_unchanged
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


# ---- a 4.3.0 single-file backup: what restore takes, verify takes (issue 13, item 10) --------

def legacy_tarball(sandbox: Sandbox, backup_dir: Path, name: str, *,
                   flip_at: int | None = None) -> Path:
    """`snapshot_db_kuberesources_<ts>.tar.gz` made as the 4.3.0 script made it, from the
    real backup's snapshot: `tar -cpf` of the highest kube-apiserver-pod-N, `tar rf` of
    snapshot.db, then gzip. `flip_at`: corrupt that byte of snapshot.db first."""
    [snapshot] = backup_dir.glob("snapshot_*.db")
    [manifest] = backup_dir.glob("backup_*.json")
    revision = json.loads(manifest.read_text())["static_resources"]["kube_apiserver_revision"]
    work = backup_dir.parent / f"legacy-{name}"
    (work / "tmp").mkdir(parents=True)
    data = bytearray(snapshot.read_bytes())
    if flip_at is not None:
        data[flip_at] ^= 0x40
    (work / "tmp/snapshot.db").write_bytes(bytes(data))
    tar = work / f"snapshot_db_kuberesources_{name}.tar"
    for argv in (["tar", "-cpf", str(tar), "-C", str(sandbox.root(0) / "etc/kubernetes"),
                  f"static-pod-resources/kube-apiserver-pod-{revision}"],
                 ["tar", "rf", str(tar), "-C", str(work / "tmp"), "snapshot.db"],
                 ["gzip", str(tar)]):
        subprocess.run(argv, check=True, capture_output=True)
    shutil.rmtree(work / "tmp")
    return tar.with_name(tar.name + ".gz")


def test_a_430_single_file_backup_verifies(run_cli, sandbox: Sandbox, backup_dir: Path) -> None:
    tarball = legacy_tarball(sandbox, backup_dir, "2020-01-15_101010")
    [manifest] = backup_dir.glob("backup_*.json")
    etcd = json.loads(manifest.read_text())["etcd"]
    shown = "/home/core/legacy-2020-01-15_101010/" + tarball.name
    with assert_host_unchanged(sandbox.root(0), ("var/lib/etcd",)):
        out = verify(run_cli, sandbox, shown).stdout
        assert f"{tarball.name}: ok revision {etcd['revision']}, {etcd['keys']} keys" in out
        assert "archive ok" in out
        lines = run_cli(["--log-format", "json", "snapshot", "verify", shown],
                        env=sandbox.env_vars(0, dict(os.environ))).json_lines()
    [result] = [d for d in lines if d.get("event") == "verify.result"]
    assert (result["revision"], result["keys"], result["archive_ok"]) == (
        etcd["revision"], etcd["keys"], True)


def test_a_430_backup_with_a_flipped_byte_in_its_snapshot(run_cli, sandbox: Sandbox,
                                                         backup_dir: Path) -> None:
    [snapshot] = backup_dir.glob("snapshot_*.db")
    tarball = legacy_tarball(sandbox, backup_dir, "2020-01-15_111111",
                             flip_at=snapshot.stat().st_size // 2)
    with assert_host_unchanged(sandbox.root(0), ("var/lib/etcd",)):
        err = verify(run_cli, sandbox, "/home/core/legacy-2020-01-15_111111/" + tarball.name,
                     exit_code=6).stderr
    assert f"snapshot.db in {tarball.name} failed its integrity check: the sha256 trailer " \
           "does not match" in err


def test_a_430_backup_whose_archive_is_cut(run_cli, sandbox: Sandbox, backup_dir: Path) -> None:
    tarball = legacy_tarball(sandbox, backup_dir, "2020-01-15_121212")
    os.truncate(tarball, tarball.stat().st_size - 64)  # the snapshot.db is whole, the gzip not
    err = verify(run_cli, sandbox, "/home/core/legacy-2020-01-15_121212/" + tarball.name,
                 exit_code=6).stderr
    assert "is not a readable gzip tar" in err


def test_a_static_resources_archive_alone_is_not_a_backup(run_cli, sandbox: Sandbox,
                                                          backup_dir: Path) -> None:
    [archive] = backup_dir.glob("static_kuberesources_*.tar.gz")
    err = verify(run_cli, sandbox, "/home/core/verify/" + archive.name, exit_code=3).stderr
    assert "holds no snapshot.db" in err


def test_restore_refuses_a_430_backup_with_a_flipped_byte_before_any_change(
        run_cli, sandbox: Sandbox, backup_dir: Path) -> None:  # type: ignore[no-untyped-def]
    [snapshot] = backup_dir.glob("snapshot_*.db")
    tarball = legacy_tarball(sandbox, backup_dir, "2020-01-15_131313",
                             flip_at=snapshot.stat().st_size // 2)
    alone = f"{sandbox.spec(0).member_name}={sandbox.spec(0).peer_url}"
    with assert_host_unchanged(sandbox.root(0), ("var/lib/etcd",)):
        err = run_cli(["restore", "/home/core/legacy-2020-01-15_131313/" + tarball.name,
                       "--initial-cluster", alone, "--rewind-healthy-cluster", "--yes"],
                      env=sandbox.env_vars(0, dict(os.environ)), exit_code=6).stderr
    assert f"snapshot.db in {tarball.name} failed its integrity check" in err
    assert "state: unchanged" in err


def test_a_backup_manifest_is_not_called_a_damaged_snapshot(run_cli, sandbox: Sandbox,  # type: ignore[no-untyped-def]
                                                            backup_dir: Path) -> None:
    [manifest] = backup_dir.glob("backup_*.json")
    err = verify(run_cli, sandbox, f"/home/core/verify/{manifest.name}", exit_code=3).stderr
    assert "is a JSON file (a backup manifest?), not a snapshot" in err
    assert "give the directory that holds it (/home/core/verify)" in err
