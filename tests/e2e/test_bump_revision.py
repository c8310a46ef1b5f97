"""A restore with etcdutl 3.5.16 (Debian trixie) bumps etcd's revision and marks it
compacted, for real: the revision ends up past the backup's by the journaled bump, and a watch
from a revision of before the restore gets etcd's "compacted" error instead of events that
reuse revisions the old cluster had given to other changes. --no-bump-revision shows the
difference: the revision goes back and the same watch is served the reused revisions."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import etcd3
import grpc
import pytest
from etcd3.etcdrpc import rpc_pb2 as rpc
from etcd3.etcdrpc import rpc_pb2_grpc as rpc_grpc

from tests.conftest import require_etcd
from tests.e2e.helpers import cluster_of, command
from toolbox.sandbox import workload
from toolbox.sandbox.binaries import TRIXIE_ETCD
from toolbox.sandbox.cluster import Sandbox

pytestmark = pytest.mark.timeout(600)
BEFORE, AFTER = 100, 20  # writes before and after the backup: fewer after than the bump
PREFIX = "/kubernetes.io/configmaps/bump/"
PREFIX_END = b"/kubernetes.io/configmaps/bump0"  # the range of PREFIX: its last byte + 1
WATCH_WAIT = 5.0


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One master, as guide 3.3 rewinds a cluster: its own cluster of one."""
    require_etcd(TRIXIE_ETCD)
    sb = Sandbox.up(tmp_path_factory.mktemp("bump") / "sb", masters=1, etcd=TRIXIE_ETCD)
    yield sb
    sb.down()


@dataclass(frozen=True)
class Rewind:
    backup_revision: int    # of the snapshot, as etcdutl reads it
    last_revision: int      # the newest any client saw before the restore
    bump: int | None        # what the restore journaled
    restored_revision: int  # etcd's revision right after the restore
    probe_revision: int     # of the first write after the restore


def put_one_by_one(kv: etcd3.Etcd3Client, group: str, count: int) -> None:
    """A revision each, as API objects are written."""
    for i in range(count):
        kv.put(f"{PREFIX}{group}-{i:04d}", b"v")


def revision(sandbox: Sandbox) -> int:
    with sandbox.client(0) as client:
        return client.status().revision


def snapshot_revision(sandbox: Sandbox, snapshot: Path, work: Path) -> int:
    """etcdutl's own reading of the backup (on a copy: the backup stays as it was)."""
    copy = work / snapshot.name
    shutil.copy(snapshot, copy)
    out = subprocess.run([str(sandbox.binaries.etcdutl), "snapshot", "status", str(copy),
                          "-w", "json"], capture_output=True, text=True, timeout=60, check=True)
    return int(json.loads(out.stdout)["revision"])


def rewind(sandbox: Sandbox, work: Path, *, bump: bool, before: int, after: int) -> Rewind:
    """Write `before` keys, back up, write `after` keys, restore that backup on master-0."""
    work.mkdir()
    backup = f"/home/core/{work.name}"
    with workload.kv_client(sandbox, 0) as kv:
        put_one_by_one(kv, f"{work.name}-before", before)
    done = command(sandbox, 0, "backup", backup)
    assert done.returncode == 0, done.stderr
    [snapshot] = (sandbox.root(0) / "var/home/core" / work.name).glob("snapshot_*.db")
    with workload.kv_client(sandbox, 0) as kv:
        put_one_by_one(kv, f"{work.name}-after", after)
    last = revision(sandbox)
    args = ["restore", backup, "--initial-cluster", cluster_of(sandbox, [0]),
            "--rewind-healthy-cluster", "--yes", *([] if bump else ["--no-bump-revision"])]
    done = command(sandbox, 0, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    journal = json.loads((sandbox.root(0) / "var/lib/ocp-recovery/journal.json").read_text())
    restored = revision(sandbox)
    with workload.kv_client(sandbox, 0) as kv:
        kv.put(f"{PREFIX}{work.name}-probe", b"written after the restore")
        _, meta = kv.get(f"{PREFIX}{work.name}-probe")
    return Rewind(snapshot_revision(sandbox, snapshot, work), last, journal["plan"]["bump"],
                  restored, meta.mod_revision)


def watch_from(sandbox: Sandbox, start_revision: int) -> int | list[tuple[str, int]]:
    """What a watch of PREFIX from `start_revision` gets first: etcd's compact revision when
    it is refused as compacted, else the (key, revision) of the events delivered ([] when
    none come within WATCH_WAIT)."""
    create = rpc.WatchCreateRequest(key=PREFIX.encode(), range_end=PREFIX_END,
                                    start_revision=start_revision)
    with sandbox.client(0) as client:
        replies = rpc_grpc.WatchStub(client.channel).Watch(
            iter([rpc.WatchRequest(create_request=create)]), timeout=WATCH_WAIT)
        try:
            for reply in replies:
                if reply.compact_revision:
                    return int(reply.compact_revision)
                if reply.events:
                    return [(e.kv.key.decode(), e.kv.mod_revision) for e in reply.events]
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
    return []


# The rewinds follow each other on the one master: keep the tests in this order.

@pytest.fixture(scope="module")
def unbumped(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Rewind:
    return rewind(sandbox, tmp_path_factory.mktemp("w") / "unbumped", bump=False,
                  before=BEFORE, after=AFTER)


def test_without_the_bump_the_revision_goes_back(unbumped: Rewind) -> None:
    assert unbumped.bump is None
    assert unbumped.restored_revision == unbumped.backup_revision < unbumped.last_revision


def test_without_the_bump_a_watch_from_before_the_restore_gets_reused_revisions(
        sandbox: Sandbox, unbumped: Rewind) -> None:
    # Before the restore this revision was the first write after the backup; now it is
    # another write, delivered to a watcher that has already seen "that" revision.
    start = unbumped.backup_revision + 1
    assert unbumped.probe_revision == start
    assert watch_from(sandbox, start) == [(f"{PREFIX}unbumped-probe", start)]


@pytest.fixture(scope="module")
def bumped(sandbox: Sandbox, unbumped: Rewind, tmp_path_factory: pytest.TempPathFactory
           ) -> Rewind:
    return rewind(sandbox, tmp_path_factory.mktemp("w") / "bumped", bump=True, before=BEFORE,
                  after=AFTER)


def test_the_bumped_restore_gives_back_the_backups_data(sandbox: Sandbox, bumped: Rewind
                                                         ) -> None:
    assert len(keys_in_prefix(sandbox, "bumped-before")) == BEFORE
    assert keys_in_prefix(sandbox, "bumped-after") == set()


def keys_in_prefix(sandbox: Sandbox, group: str) -> set[str]:
    with workload.kv_client(sandbox, 0) as kv:
        return {m.key.decode() for _, m in kv.get_prefix(f"{PREFIX}{group}-")}


def test_the_revision_moves_past_the_backup_by_the_journaled_bump(bumped: Rewind) -> None:
    assert bumped.bump is not None and bumped.bump > 0
    assert bumped.restored_revision >= bumped.backup_revision + bumped.bump
    assert bumped.restored_revision > bumped.last_revision
    assert bumped.probe_revision > bumped.last_revision


def test_a_watch_from_before_the_bumped_restore_is_compacted(sandbox: Sandbox, bumped: Rewind
                                                             ) -> None:
    # From the first revision after the backup (every watcher of the old cluster saw it),
    # and from where an informer that saw the newest one resumes.
    assert bumped.bump is not None
    for start in (bumped.backup_revision + 1, bumped.last_revision + 1):
        compacted = watch_from(sandbox, start)
        assert isinstance(compacted, int), f"from {start}: {compacted}"
        assert compacted >= bumped.backup_revision + bumped.bump
    # From the restored revision on, the watch is served: the new write, at its new revision.
    assert watch_from(sandbox, bumped.restored_revision + 1) == \
        [(f"{PREFIX}bumped-probe", bumped.probe_revision)]


def test_a_backup_after_the_bumped_restore(sandbox: Sandbox, bumped: Rewind,
                                           tmp_path_factory: pytest.TempPathFactory) -> None:
    # etcdutl marks the bumped revision with an empty value in bucket "key".
    done = command(sandbox, 0, "backup", "/home/core/after-bump")
    assert done.returncode == 0, done.stderr
    [snapshot] = (sandbox.root(0) / "var/home/core/after-bump").glob("snapshot_*.db")
    assert snapshot_revision(sandbox, snapshot, tmp_path_factory.mktemp("w")) == \
        bumped.probe_revision


def test_the_bump_covers_more_writes_since_the_backup_than_its_raft_index(
        sandbox: Sandbox, bumped: Rewind, tmp_path_factory: pytest.TempPathFactory) -> None:
    with sandbox.client(0) as client:
        raft_index = client.status().raft_index
    many = rewind(sandbox, tmp_path_factory.mktemp("w") / "many", bump=True, before=0,
                  after=int(raft_index * 1.3) + 10)
    resumed = watch_from(sandbox, many.last_revision + 1)
    assert isinstance(resumed, int), (
        f"watch from {many.last_revision + 1} after a restore bumped by {many.bump} from "
        f"revision {many.backup_revision}: {resumed}")
