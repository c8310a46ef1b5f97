"""Off-site backups (issue 15) as a user sees them, against a real Ceph RADOS Gateway over
HTTPS: `backup --upload` puts an encrypted, read-back set on the store; `backup ls` shows it;
`fetch` gives back the very bytes; `verify --identity` checks it; `restore s3://…` brings
etcd's keys back; a 4.3-made set goes up and comes back; Object Lock holds what prune would
remove; prune keeps its floor and clears unfinished uploads after their grace."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_etcd
from tests.e2e.helpers import cluster_of, command, keys_in
from toolbox.host.backups import BackupSet, find_backup_sets
from toolbox.procedures import offsite_prune
from toolbox.sandbox import workload
from toolbox.sandbox.cluster import Sandbox
from toolbox.sandbox.objectstore import ObjectStore
from toolbox.store.s3 import Bucket

BUCKET = "offsite-integration"
LOCKED_BUCKET = "offsite-integration-locked"
AGE_HEADER = b"age-encryption.org/v1\n"
BACKUP = "/home/core/backup"
IDENTITY = "/home/core/offsite-identity.txt"


@dataclass(frozen=True)
class Offsite:
    sandbox: Sandbox
    store: ObjectStore
    env: dict[str, str]        # the CLI's: master-0 and the store's AWS_* variables
    recipient: str             # age1… of IDENTITY
    uploaded: dict             # type: ignore[type-arg]  # `backup --upload --json`'s result
    first: BackupSet           # the set `backup --upload` made, on master-0

    def host(self, path: str) -> Path:
        return self.sandbox.root(0) / path.lstrip("/")

    def keys(self, bucket: str, prefix: str) -> list[str]:
        listed = self.store.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for o in listed.get("Contents", []))


def backup_sets(offsite: Offsite, directory: str = BACKUP) -> list[BackupSet]:
    return find_backup_sets(offsite.host(directory))


@pytest.fixture(scope="module")
def offsite(tmp_path_factory: pytest.TempPathFactory, object_store: ObjectStore
            ) -> Iterator[Offsite]:
    """A 1-master sandbox holding 200 keys, an identity from `backup keygen`, and the set of
    `backup /home/core/backup --upload s3://BUCKET/prod`."""
    require_etcd("3.5")
    object_store.create_bucket(BUCKET)
    object_store.create_bucket(LOCKED_BUCKET, object_lock=True)
    sandbox = Sandbox.up(tmp_path_factory.mktemp("offsite-sandbox"), masters=1, etcd="3.5")
    try:
        with workload.kv_client(sandbox, 0) as kv:
            workload.write(kv, "before", 200)
        store_env = object_store.env()
        keygen = command(sandbox, 0, "backup", "keygen", IDENTITY, "--json")
        assert keygen.returncode == 0, keygen.stderr
        recipient = json.loads(keygen.stdout)["recipient"]
        done = command(sandbox, 0, "backup", BACKUP, "--upload", f"s3://{BUCKET}/prod",
                       "--recipient", recipient, "--json", extra_env=store_env)
        assert done.returncode == 0, done.stderr
        [first] = find_backup_sets(sandbox.root(0) / BACKUP.lstrip("/"))
        yield Offsite(sandbox, object_store, {**sandbox.env_vars(0, dict(os.environ)),
                                              **store_env},
                      recipient, json.loads(done.stdout), first)
    finally:
        sandbox.down()


@pytest.fixture(scope="module")
def second(offsite: Offsite) -> BackupSet:
    """A newer local set beside the first (not uploaded)."""
    done = command(offsite.sandbox, 0, "backup", BACKUP)
    assert done.returncode == 0, done.stderr
    newest = backup_sets(offsite)[-1]
    assert newest.timestamp > offsite.first.timestamp
    return newest


def test_backup_upload_is_listed_with_revision_cluster_and_encryption(
        run_cli, offsite: Offsite) -> None:  # type: ignore[no-untyped-def]
    local = offsite.first.read_manifest()
    assert local is not None
    url = f"s3://{BUCKET}/prod/{offsite.first.timestamp}"
    assert offsite.uploaded["uploaded"] == url
    # `ls --json` is one JSON object on stdout, nothing else.
    listed = json.loads(run_cli(["backup", "ls", f"s3://{BUCKET}/prod", "--json"],
                                env=offsite.env).stdout)
    [stored] = listed["sets"]
    assert (stored["name"], stored["location"]) == (offsite.first.timestamp, url)
    assert stored["revision"] == local["etcd"]["revision"]
    assert stored["cluster_id"] == local["etcd"]["cluster_id"] is not None
    assert (stored["encrypted"], stored["verified"], stored["offsite"]) == (True, True, True)
    assert stored["recipients"] == [offsite.recipient]
    assert stored["snapshot_bytes"] == offsite.first.snapshot.stat().st_size  # type: ignore[union-attr]
    assert listed["incomplete"] == []
    console = run_cli(["backup", "ls", f"s3://{BUCKET}/prod"], env=offsite.env).stdout
    assert f"cluster {local['etcd']['cluster_id']}  verified, encrypted, off-site  to " \
        f"{offsite.recipient[:16]}…  {url}" in console
    # The local set says it is off-site too.
    here = run_cli(["backup", "ls", BACKUP, "--json"], env=offsite.env).stdout
    assert json.loads(here)["sets"][0]["offsite"] is True


def test_stored_objects_are_age_ciphertext_not_the_backup(offsite: Offsite) -> None:
    client = offsite.store.client()
    prefix = f"prod/{offsite.first.timestamp}/"
    assert offsite.keys(BUCKET, prefix) == sorted(
        prefix + name for name in (f"backup_{offsite.first.timestamp}.json",
                                   f"snapshot_{offsite.first.timestamp}.db.age",
                                   f"static_kuberesources_{offsite.first.timestamp}.tar.gz.age"))
    assert offsite.first.snapshot is not None and offsite.first.archive is not None
    snapshot = offsite.first.snapshot.read_bytes()
    archive = offsite.first.archive.read_bytes()
    key_name = b"/kubernetes.io/configmaps/drill-before/cm-000000"
    assert key_name in snapshot  # the plaintext does hold it
    for name, plaintext in (("snapshot", snapshot), ("static_kuberesources", archive)):
        [key] = [k for k in offsite.keys(BUCKET, prefix) if f"/{name}_" in k]
        stored = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert stored.startswith(AGE_HEADER)
        assert b"-> X25519 " in stored[:200]
        assert key_name not in stored
        for start in range(0, len(plaintext) - 64, max(64, len(plaintext) // 16)):
            assert plaintext[start:start + 64] not in stored, f"{key} holds plaintext"


def test_fetch_gives_back_the_same_bytes(run_cli, offsite: Offsite) -> None:  # type: ignore[no-untyped-def]
    name = offsite.first.timestamp
    run_cli(["backup", "fetch", f"s3://{BUCKET}/prod/{name}", "/home/core/fetched",
             "--identity", IDENTITY], env=offsite.env)
    [fetched] = backup_sets(offsite, "/home/core/fetched")
    assert fetched.timestamp == name
    for mine, theirs in ((offsite.first.snapshot, fetched.snapshot),
                         (offsite.first.archive, fetched.archive)):
        assert mine is not None and theirs is not None
        assert theirs.read_bytes() == mine.read_bytes()
        assert theirs.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in offsite.host("/home/core/fetched").iterdir()) == \
        sorted(p.name for p in (offsite.first.snapshot, offsite.first.archive,
                                offsite.first.manifest) if p)
    run_cli(["snapshot", "verify", "/home/core/fetched"], env=offsite.env)


def test_verify_with_the_identity_decrypts_and_checks(run_cli, offsite: Offsite) -> None:  # type: ignore[no-untyped-def]
    verdict = json.loads(run_cli(["backup", "verify", f"s3://{BUCKET}/prod", "--identity",
                                  IDENTITY, "--json"], env=offsite.env).stdout)
    [checked] = verdict["sets"]
    assert checked["decrypted"] is True and checked["problems"] == []
    assert checked["revision"] == offsite.first.read_manifest()["etcd"]["revision"]  # type: ignore[index]


def test_a_43_made_set_is_pushed_and_fetched(run_cli, offsite: Offsite) -> None:  # type: ignore[no-untyped-def]
    legacy = offsite.host("/home/core/legacy")
    legacy.mkdir()
    for path in (offsite.first.snapshot, offsite.first.archive):  # no backup_*.json
        assert path is not None
        shutil.copy(path, legacy / path.name)
    run_cli(["backup", "push", "/home/core/legacy", f"s3://{BUCKET}/legacy",
             "--recipient", offsite.recipient], env=offsite.env)
    assert not list(legacy.glob("backup_*.json"))  # the 4.3 set is left as it was
    listed = json.loads(run_cli(["backup", "ls", f"s3://{BUCKET}/legacy", "--json"],
                                env=offsite.env).stdout)
    [stored] = listed["sets"]
    assert stored["revision"] == offsite.first.read_manifest()["etcd"]["revision"]  # type: ignore[index]
    assert stored["cluster_id"] is None  # a snapshot does not hold it
    run_cli(["backup", "fetch", f"s3://{BUCKET}/legacy", "/home/core/legacy-fetched",
             "--identity", IDENTITY], env=offsite.env)
    [fetched] = backup_sets(offsite, "/home/core/legacy-fetched")
    assert fetched.snapshot is not None and fetched.archive is not None
    assert fetched.snapshot.read_bytes() == (legacy / fetched.snapshot.name).read_bytes()
    assert fetched.archive.read_bytes() == (legacy / fetched.archive.name).read_bytes()


def test_lock_days_sets_retention_and_prune_keeps_the_locked_set(
        run_cli, offsite: Offsite, second: BackupSet) -> None:  # type: ignore[no-untyped-def]
    url = f"s3://{LOCKED_BUCKET}/prod"
    old = offsite.first
    assert old.snapshot is not None
    run_cli(["backup", "push", str(Path(BACKUP) / old.snapshot.name), url, "--recipient",
             offsite.recipient, "--lock-days", "2"], env=offsite.env)
    run_cli(["backup", "push", BACKUP, url, "--recipient", offsite.recipient],
            env=offsite.env)
    client = offsite.store.client()
    locked = offsite.keys(LOCKED_BUCKET, f"prod/{old.timestamp}/")
    assert len(locked) == 3
    now = dt.datetime.now(dt.UTC)
    for key in locked:
        head = client.head_object(Bucket=LOCKED_BUCKET, Key=key)
        assert head["ObjectLockMode"] == "GOVERNANCE"
        assert now + dt.timedelta(days=2, minutes=-10) < head["ObjectLockRetainUntilDate"] \
            < now + dt.timedelta(days=2, minutes=10)
    pruned = json.loads(run_cli(["backup", "prune", url, "--keep", "1", "--yes", "--json"],
                                env=offsite.env).stdout)
    assert pruned["removed"] == []
    assert [s["set"] for s in pruned["locked"]] == [old.timestamp]
    assert offsite.keys(LOCKED_BUCKET, f"prod/{old.timestamp}/") == locked
    listed = json.loads(run_cli(["backup", "ls", url, "--json"], env=offsite.env).stdout)
    assert [s["name"] for s in listed["sets"]] == [old.timestamp, second.timestamp]


def test_prune_keeps_its_floor_and_removes_unfinished_uploads_after_the_grace(
        run_cli, offsite: Offsite, second: BackupSet,  # type: ignore[no-untyped-def]
        monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"s3://{BUCKET}/prune"
    run_cli(["backup", "push", BACKUP, url, "--all", "--recipient", offsite.recipient],
            env=offsite.env)
    # What an upload killed before its manifest leaves: objects of a set, no manifest.
    unfinished = "2020-01-01_000000"
    client = offsite.store.client()
    client.put_object(Bucket=BUCKET, Key=f"prune/{unfinished}/snapshot_{unfinished}.db.age",
                      Body=AGE_HEADER + b"an upload that never finished")
    pruned = json.loads(run_cli(["backup", "prune", url, "--keep", "1", "--yes", "--json"],
                                env=offsite.env).stdout)
    assert pruned["removed"] == [offsite.first.timestamp]
    assert offsite.keys(BUCKET, f"prune/{offsite.first.timestamp}/") == []
    assert len(offsite.keys(BUCKET, f"prune/{second.timestamp}/")) == 3
    # Younger than the grace: it may be an upload still running elsewhere.
    assert offsite.keys(BUCKET, f"prune/{unfinished}/") != []

    for name, value in offsite.store.env().items():
        monkeypatch.setenv(name, value)
    bucket = Bucket.connect(BUCKET)
    request = offsite_prune.PruneRequest(url, keep=1)
    later = dt.datetime.now(dt.UTC) + offsite_prune.UNFINISHED_GRACE + dt.timedelta(hours=1)
    plan = offsite_prune.plan(request, bucket, now=later)
    assert [name for name, _ in plan.unfinished] == [unfinished]
    assert [s.name for s in plan.doomed] == []  # the floor: the newest set stays
    offsite_prune.execute(bucket, plan)
    assert offsite.keys(BUCKET, "prune/") == offsite.keys(BUCKET, f"prune/{second.timestamp}/")


# ---- changes etcd's data: keep last in this module ----------------------------------------

def test_restore_from_the_store_brings_the_keys_back(offsite: Offsite) -> None:
    sandbox = offsite.sandbox
    with workload.kv_client(sandbox, 0) as kv:
        workload.write(kv, "after", 50)
    done = command(sandbox, 0, "restore", f"s3://{BUCKET}/prod", "--identity", IDENTITY,
                   "--initial-cluster", cluster_of(sandbox, [0]), "--rewind-healthy-cluster",
                   "--yes", extra_env=offsite.store.env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"s3://{BUCKET}/prod/{offsite.first.timestamp} -> " in done.stdout
    assert "restore ok" in done.stdout
    assert len(keys_in(sandbox, 0, "before")) == 200
    assert keys_in(sandbox, 0, "after") == set()
