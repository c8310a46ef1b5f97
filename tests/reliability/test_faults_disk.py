"""The disk fills: while a snapshot streams in, or where a restore must copy the old data
dir. A clean failure, and nothing half-written left as if it were good."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import assert_host_unchanged
from tests.e2e.helpers import backed_up_sandbox, cluster_of, command
from toolbox.errors import InsufficientSpace
from toolbox.etcd.snapshot import save_stream
from toolbox.sandbox import workload
from toolbox.sandbox.cluster import Sandbox

pytestmark = pytest.mark.fault("disk")


def test_disk_full_while_streaming_leaves_nothing(mount_tmpfs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    small = mount_tmpfs(tmp_path / "full", size="1m")
    chunks = (b"\0" * 65536 for _ in range(64))  # 4 MiB into 1 MiB
    with pytest.raises(InsufficientSpace, match="ran out of space"):
        save_stream(chunks, small / "snapshot_x.db")
    assert list(small.iterdir()) == []


@pytest.fixture
def backed_up(tmp_path: Path) -> Iterator[Sandbox]:
    with backed_up_sandbox(tmp_path / "sb", masters=1, keys=300) as sandbox:
        yield sandbox


def test_restore_without_room_to_keep_the_old_data_dir_is_refused(backed_up: Sandbox,
                                                                 mount_tmpfs) -> None:  # type: ignore[no-untyped-def]
    # The state dir on its own small filesystem: the old data dir must be copied there
    # (not renamed), and it does not fit.
    mount_tmpfs(backed_up.root(0) / "var/lib/ocp-recovery", size="64k")
    with assert_host_unchanged(backed_up.root(0), ("var/lib/etcd",)):
        done = command(backed_up, 0, "restore", "/home/core/backup", "--initial-cluster",
                       cluster_of(backed_up, [0]), "--yes")
        assert done.returncode == 7, done.stderr
    assert "set aside" in done.stderr and "state: unchanged" in done.stderr
    # The host's own path, as the operator can `df` it, not where this process sees it.
    assert "error: /var/lib/ocp-recovery has " in done.stderr, done.stderr
    assert str(backed_up.root(0)) not in done.stderr
    assert len(workload.read_group(backed_up, 0, "before")) == 300  # etcd kept serving


def test_member_add_without_room_for_the_db_is_refused(tmp_path: Path, mount_tmpfs) -> None:  # type: ignore[no-untyped-def]
    """The new member is sent the whole db: a disk too small for it is refused before etcd
    is stopped or the member is added (a member that never starts counts toward quorum)."""
    sandbox = Sandbox.up(tmp_path / "sb", masters=3)
    try:
        with workload.kv_client(sandbox, 0) as kv:
            workload.write(kv, "kept", 100)
        sandbox.stop_master(2)
        removed = command(sandbox, 0, "member", "remove", "etcd-member-master-2", "--yes")
        assert removed.returncode == 0, removed.stderr
        mount_tmpfs(sandbox.root(2) / "var/lib/etcd", size="64k")
        with assert_host_unchanged(sandbox.root(2)):
            done = command(sandbox, 2, "member", "add", sandbox.spec(0).ip,
                           "etcd-member-master-2", "--yes")
            assert done.returncode == InsufficientSpace.exit_code, done.stderr
        assert "db this member receives" in done.stderr and "state: unchanged" in done.stderr
        assert "error: /var/lib/etcd has " in done.stderr, done.stderr
        assert str(sandbox.root(2)) not in done.stderr
        with workload.kv_client(sandbox, 0) as kv:
            assert sorted(m.name for m in kv.members) == ["etcd-member-master-0",
                                                         "etcd-member-master-1"]
    finally:
        sandbox.down()
