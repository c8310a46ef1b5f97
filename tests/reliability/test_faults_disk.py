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
    assert len(workload.read_group(backed_up, 0, "before")) == 300  # etcd kept serving
