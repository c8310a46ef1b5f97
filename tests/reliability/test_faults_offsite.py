"""Off-site backups when something fails half-way, against a real Ceph RADOS Gateway: the
store killed mid-upload or mid-fetch, the toolbox SIGKILLed mid-upload or mid-fetch, the
store down when a backup uploads, the disk filling during a fetch. Each time: its exit code,
the local set intact, no manifest (so no set) on the store, no partial file in the fetch
directory, and a re-run that completes."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import assert_host_unchanged, require_etcd
from tests.e2e.helpers import command
from toolbox.context import build_context
from toolbox.errors import InsufficientSpace, ObjectStoreError
from toolbox.host.backups import BackupSet, find_backup_sets
from toolbox.procedures import offsite_fetch, offsite_prune
from toolbox.sandbox import workload
from toolbox.sandbox.cluster import Sandbox
from toolbox.sandbox.objectstore import ObjectStore
from toolbox.store import encryption, s3

pytestmark = pytest.mark.fault("offsite")

BUCKET = "offsite-faults"
LOCKED_BUCKET = "offsite-faults-locked"
BACKUP = "/home/core/backup"
IDENTITY = "/home/core/offsite-identity.txt"
MIN_PART = 5 << 20  # S3's (and Ceph's) smallest part but the last


@dataclass(frozen=True)
class Master:
    sandbox: Sandbox
    store: ObjectStore
    env: dict[str, str]        # the CLI's: master-0 and the store's AWS_* variables
    recipient: str
    backup: BackupSet          # in BACKUP, a snapshot of several parts
    stored: str                # s3:// URL of that set, uploaded once

    def host(self, path: str) -> Path:
        return self.sandbox.root(0) / path.lstrip("/")

    def keys(self, prefix: str) -> list[str]:
        listed = self.store.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        return sorted(o["Key"] for o in listed.get("Contents", []))

    def listing(self, run_cli: Any, url: str) -> dict[str, Any]:
        listed: dict[str, Any] = json.loads(
            run_cli(["backup", "ls", url, "--json"], env=self.env).stdout)
        return listed


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory, object_store: ObjectStore
           ) -> Iterator[Master]:
    """A 1-master sandbox whose snapshot is about 12 MiB (three parts of MIN_PART), backed
    up in BACKUP and uploaded to s3://BUCKET/stored; an identity from `backup keygen`."""
    require_etcd("3.5")
    object_store.create_bucket(BUCKET)
    object_store.create_bucket(LOCKED_BUCKET, object_lock=True)
    sandbox = Sandbox.up(tmp_path_factory.mktemp("offsite-faults"), masters=1, etcd="3.5")
    try:
        workload.fill(sandbox, 12)
        store_env = object_store.env()
        keygen = command(sandbox, 0, "backup", "keygen", IDENTITY, "--json")
        assert keygen.returncode == 0, keygen.stderr
        recipient = json.loads(keygen.stdout)["recipient"]
        stored = f"s3://{BUCKET}/stored"
        done = command(sandbox, 0, "backup", BACKUP, "--upload", stored, "--recipient",
                       recipient, extra_env=store_env)
        assert done.returncode == 0, done.stderr
        [backup] = find_backup_sets(sandbox.root(0) / BACKUP.lstrip("/"))
        assert backup.snapshot is not None and backup.snapshot.stat().st_size > 2 * MIN_PART
        yield Master(sandbox, object_store, {**sandbox.env_vars(0, dict(os.environ)),
                                             **store_env},
                     recipient, backup, f"{stored}/{backup.timestamp}")
    finally:
        sandbox.down()


def assert_same_set(master: Master, directory: str) -> None:
    [fetched] = find_backup_sets(master.host(directory))
    for mine, theirs in ((master.backup.snapshot, fetched.snapshot),
                         (master.backup.archive, fetched.archive)):
        assert mine is not None and theirs is not None
        assert theirs.read_bytes() == mine.read_bytes()


def partial_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*.partial")) if directory.exists() else []


# ---- upload ---------------------------------------------------------------------------------

def test_store_killed_mid_upload_leaves_no_set_and_a_rerun_completes(
        run_cli, master: Master, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    url = f"s3://{BUCKET}/store-killed"
    monkeypatch.setattr(s3, "PART_SIZE", MIN_PART)
    send_part = s3.PartWriter._upload_part

    def first_part_then_kill(writer: s3.PartWriter, number: int, data: bytes) -> Any:
        answer = send_part(writer, number, data)
        master.store.kill_radosgw()  # the store dies once a part of the snapshot is stored
        return answer

    monkeypatch.setattr(s3.PartWriter, "_upload_part", first_part_then_kill)
    try:
        with assert_host_unchanged(master.host(BACKUP)):
            err = run_cli(["backup", "push", BACKUP, url, "--recipient", master.recipient],
                          env=master.env, exit_code=16).stderr
    finally:
        master.store.start_radosgw()
    assert "did not answer" in err and "next:" in err
    assert not [k for k in master.keys("store-killed/") if k.endswith(".json")]
    monkeypatch.setattr(s3.PartWriter, "_upload_part", send_part)
    assert master.listing(run_cli, url)["sets"] == []

    run_cli(["backup", "push", BACKUP, url, "--recipient", master.recipient], env=master.env)
    [stored] = master.listing(run_cli, url)["sets"]
    assert stored["name"] == master.backup.timestamp
    run_cli(["backup", "verify", url, "--identity", IDENTITY], env=master.env)


@pytest.mark.parametrize("kill_when", [
    pytest.param("toolbox.procedures.offsite_upload:_upload_file", id="after-the-first-file"),
    pytest.param("toolbox.procedures.offsite_upload:offsite_manifest",
                 id="before-the-manifest"),
])
def test_toolbox_killed_mid_upload_leaves_no_set_and_a_rerun_completes(
        run_cli, master: Master, kill_when: str) -> None:  # type: ignore[no-untyped-def]
    prefix = f"killed-{kill_when.rpartition(':')[2].strip('_')}"
    url = f"s3://{BUCKET}/{prefix}"
    with assert_host_unchanged(master.host(BACKUP)):
        killed = command(master.sandbox, 0, "backup", "push", BACKUP, url, "--recipient",
                         master.recipient, extra_env=master.store.env(), kill_when=kill_when)
    assert killed.returncode == -9, killed.stderr
    left = master.keys(f"{prefix}/")
    assert left and not [k for k in left if k.endswith(".json")]  # objects, no manifest
    listed = master.listing(run_cli, url)
    assert (listed["sets"], listed["incomplete"]) == ([], [master.backup.timestamp])

    run_cli(["backup", "push", BACKUP, url, "--recipient", master.recipient], env=master.env)
    listed = master.listing(run_cli, url)
    assert ([s["name"] for s in listed["sets"]], listed["incomplete"]) == \
        ([master.backup.timestamp], [])
    run_cli(["backup", "verify", url, "--identity", IDENTITY], env=master.env)


def test_store_down_during_backup_upload_keeps_the_verified_local_backup(
        run_cli, master: Master) -> None:  # type: ignore[no-untyped-def]
    url = f"s3://{BUCKET}/store-down"
    master.store.kill_radosgw()
    try:
        err = run_cli(["backup", "/home/core/backup-store-down", "--upload", url,
                       "--recipient", master.recipient], env=master.env, exit_code=16).stderr
    finally:
        master.store.start_radosgw()
    assert "did not answer" in err
    assert "verified and is kept; it is not off-site" in err
    push = next(line for line in err.splitlines() if line.startswith("next:"))
    assert "ocp-recovery backup push /home/core/backup-store-down/snapshot_" in push
    assert master.keys("store-down/") == []
    [local] = find_backup_sets(master.host("/home/core/backup-store-down"))
    assert local.verified
    run_cli(["snapshot", "verify", "/home/core/backup-store-down"], env=master.env)
    # The command it says to run next.
    run_cli(["backup", "push", push.split("backup push ")[1].split()[0], url, "--recipient",
             master.recipient], env=master.env)
    assert [s["name"] for s in master.listing(run_cli, url)["sets"]] == [local.timestamp]


# ---- fetch ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kill_when", [
    pytest.param("toolbox.procedures.offsite_fetch:decrypt_stored_file",
                 id="a-file-decrypted-not-yet-in-place"),
    pytest.param("toolbox.procedures.offsite_fetch:_download", id="after-the-first-file"),
])
def test_toolbox_killed_mid_fetch_leaves_no_partial_file_and_a_rerun_completes(
        run_cli, master: Master, kill_when: str) -> None:  # type: ignore[no-untyped-def]
    directory = f"/home/core/fetch-killed-{kill_when.rpartition(':')[2].strip('_')}"
    killed = command(master.sandbox, 0, "backup", "fetch", master.stored, directory,
                     "--identity", IDENTITY, extra_env=master.store.env(), kill_when=kill_when)
    assert killed.returncode == -9, killed.stderr
    assert partial_files(master.host(directory)) == []
    assert not [s for s in find_backup_sets(master.host(directory)) if s.verified]

    run_cli(["backup", "fetch", master.stored, directory, "--identity", IDENTITY],
            env=master.env)
    assert_same_set(master, directory)


def test_store_killed_mid_fetch_leaves_nothing_and_a_rerun_completes(
        run_cli, master: Master, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    directory = "/home/core/fetch-store-killed"
    # Small ranges, few ahead: most of the snapshot is still to be read when the store dies.
    monkeypatch.setattr(s3, "RANGE_SIZE", 1 << 20)
    monkeypatch.setattr(s3, "RANGES_AHEAD", 2)
    write = encryption.HashingWriter.write

    def kill_two_mib_in(writer: encryption.HashingWriter, data: bytes) -> int:
        written = write(writer, data)
        if writer.size > 2 << 20 and master.store.running()["client.rgw.a"]:
            master.store.kill_radosgw()
        return written

    monkeypatch.setattr(encryption.HashingWriter, "write", kill_two_mib_in)
    try:
        with assert_host_unchanged(master.host("/home/core")):
            err = run_cli(["backup", "fetch", master.stored, directory, "--identity",
                           IDENTITY], env=master.env, exit_code=16).stderr
    finally:
        master.store.start_radosgw()
    assert "did not answer" in err
    monkeypatch.undo()
    run_cli(["backup", "fetch", master.stored, directory, "--identity", IDENTITY],
            env=master.env)
    assert_same_set(master, directory)


def test_the_store_failing_as_age_reads_the_header_is_exit_16_not_a_damaged_set() -> None:
    """age turns any error of its source while it reads the header into a DecryptError of
    its own, which must not be taken for a damaged object (exit 6): the store's failure is
    what the operator has to act on. (A stand-in source: to kill the store between an
    object's opening and its first bytes is a race.)"""
    from pyrage import x25519

    identity_text, _ = encryption.new_identity()
    identity = x25519.Identity.from_str(identity_text.splitlines()[1])
    failure = ObjectStoreError("cannot read s3://b/k: the object store did not answer")

    class Unanswered:
        def read(self, n: int = -1) -> bytes:
            raise failure

    with pytest.raises(ObjectStoreError) as raised:
        encryption.decrypt(Unanswered(), io.BytesIO(), [identity], "s3://b/k")
    assert raised.value is failure


def test_disk_full_during_fetch_is_exit_7_and_leaves_nothing(
        run_cli, master: Master, mount_tmpfs, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    small = mount_tmpfs(master.host("/home/core/small"), size="40m")
    filler = small / "another-writer"
    make_dir = offsite_fetch.ensure_private_dir

    def then_the_disk_fills(directory: Path) -> bool:
        # Past the free-space check, another writer takes all but 256 KiB.
        made = make_dir(directory)
        free = os.statvfs(small).f_bavail * os.statvfs(small).f_frsize
        filler.write_bytes(b"\0" * (free - (256 << 10)))
        return made

    monkeypatch.setattr(offsite_fetch, "ensure_private_dir", then_the_disk_fills)
    err = run_cli(["backup", "fetch", master.stored, "/home/core/small/fetched", "--identity",
                   IDENTITY], env=master.env, exit_code=7).stderr
    assert "ran out of space" in err and "next:" in err
    assert sorted(p.name for p in small.iterdir()) == [filler.name]


def test_a_restore_from_the_store_is_refused_before_the_download_without_room_for_both(
        master: Master, mount_tmpfs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """`restore s3://…` fetches into the state dir, then writes the data dir: on one file
    system (RHCOS's /var) both must fit before the first byte is downloaded. Here each fits
    alone (13 and 78 MiB), both do not (80 MiB)."""
    root = tmp_path / "host"
    var_lib = mount_tmpfs(root / "var/lib", size="80m")
    identity = root / IDENTITY.lstrip("/")
    identity.parent.mkdir(parents=True)
    identity.write_bytes(master.host(IDENTITY).read_bytes())
    for name, value in master.store.env().items():
        monkeypatch.setenv(name, value)
    ctx = build_context(dict(os.environ), host_root=str(root), host_exec="direct")
    request = offsite_fetch.FetchRequest(master.stored, offsite_fetch.fetched_dir(ctx),
                                         IDENTITY, progress=False, for_restore=True)
    with pytest.raises(InsufficientSpace,
                       match=r"^/var/lib has .* less than needed for .*and the data dir "
                       r"restored from it \("):
        offsite_fetch.run(ctx, request)
    assert list(var_lib.iterdir()) == []
    # Fetched for itself (`backup fetch`), the set alone fits.
    fetched = offsite_fetch.run(ctx, replace(request, for_restore=False))
    assert fetched.local.snapshot is not None
    assert fetched.local.snapshot.read_bytes() == master.backup.snapshot.read_bytes()


def test_an_unfinished_upload_under_object_lock_does_not_stop_prune(
        run_cli, master: Master, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    url = f"s3://{LOCKED_BUCKET}/prod"
    run_cli(["backup", "push", BACKUP, url, "--recipient", master.recipient, "--lock-days",
             "1"], env=master.env)
    # What `push --lock-days` killed before its manifest leaves: locked objects, no manifest.
    unfinished = "2020-01-01_000000"
    body = b"age-encryption.org/v1\nan upload that never finished"
    master.store.client().put_object(
        Bucket=LOCKED_BUCKET, Key=f"prod/{unfinished}/snapshot_{unfinished}.db.age", Body=body,
        ContentMD5=base64.b64encode(hashlib.md5(body).digest()).decode(),
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=dt.datetime.now(dt.UTC) + dt.timedelta(days=3))
    for name, value in master.store.env().items():
        monkeypatch.setenv(name, value)
    request = offsite_prune.PruneRequest(url, keep=1)
    bucket = offsite_prune.connect(build_context(dict(os.environ)), request)
    # Past the grace of an unfinished upload, well within its lock.
    later = dt.datetime.now(dt.UTC) + offsite_prune.UNFINISHED_GRACE + dt.timedelta(hours=1)
    plan = offsite_prune.plan(request, bucket, now=later)
    assert plan.unfinished == ()
    assert [name for name, _ in plan.locked] == [unfinished]
    offsite_prune.execute(bucket, plan)
    listed = master.listing(run_cli, url)
    assert ([s["name"] for s in listed["sets"]], listed["incomplete"]) == \
        ([master.backup.timestamp], [unfinished])
