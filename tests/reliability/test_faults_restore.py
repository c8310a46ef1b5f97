"""A restore killed (SIGKILL) after each step, and in the middle of the long ones: `status`
says so, `resume` finishes with the backup's data, `rollback` gives back the exact host and
the old data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import (
    assert_rollback_gives_back,
    assert_stopped_at,
    cluster_of,
    command,
    keys_in,
)
from toolbox.sandbox import workload
from toolbox.sandbox.cluster import Sandbox

STEPS = ["stop-static-pods", "wait-etcd-pod-stopped", "stop-kubelet", "stop-all-containers",
         "set-aside-data-dir", "set-aside-revisions", "restore-data-dir",
         "extract-static-resources", "start-static-pods", "start-kubelet"]
# etcd 3.4 restores with etcdctl: the steps around it are the ones that differ.
STEPS_34 = ["set-aside-data-dir", "restore-data-dir", "start-kubelet"]
IGNORED = ("var/lib/etcd", "var/lib/ocp-recovery")
# NAME@SECONDS: killed that long into the step (etcdutl/etcdctl mid-restore, the archive
# mid-extraction, the data dir mid-move).
MID_STEP = ["set-aside-data-dir@0", "restore-data-dir@0.05", "extract-static-resources@0"]
CASES = ([("3.5", s) for s in STEPS + MID_STEP] + [("3.4", s) for s in STEPS_34]
         + [("3.4", "restore-data-dir@0.05")])
pytestmark = pytest.mark.fault("restore")


@pytest.fixture
def one_master(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Sandbox]:
    from tests.conftest import require_etcd

    version = request.param
    require_etcd(version)
    sandbox = Sandbox.up(tmp_path / "sb", masters=1, etcd=version)
    try:
        with workload.kv_client(sandbox, 0) as kv:
            workload.write(kv, "before", 100)
        assert command(sandbox, 0, "backup", "/home/core/backup").returncode == 0
        with workload.kv_client(sandbox, 0) as kv:
            workload.write(kv, "after", 20)
        yield sandbox
    finally:
        sandbox.down()


def killed_after(sandbox: Sandbox, step: str) -> None:
    # A healthy one-master cluster goes back in time: guide 3.3's explicit flag.
    done = command(sandbox, 0, "restore", "/home/core/backup", "--initial-cluster",
                   cluster_of(sandbox, [0]), "--rewind-healthy-cluster", "--yes",
                   kill_after=step)
    assert done.returncode == -9, done.stderr
    status = assert_stopped_at(sandbox, 0, step)
    assert "stopped part-way" in status or all(f"done     {s}" in status for s in STEPS)


@pytest.mark.parametrize(("one_master", "step"), CASES, indirect=["one_master"])
def test_resume_after_a_kill(one_master: Sandbox, step: str) -> None:
    killed_after(one_master, step)
    resumed = command(one_master, 0, "resume")
    assert resumed.returncode == 0, resumed.stderr
    assert len(keys_in(one_master, 0, "before")) == 100
    assert keys_in(one_master, 0, "after") == set()


@pytest.mark.parametrize(("one_master", "step"), CASES, indirect=["one_master"])
def test_rollback_after_a_kill(one_master: Sandbox, step: str) -> None:
    assert_rollback_gives_back(one_master, 0, IGNORED, lambda: killed_after(one_master, step))
    one_master.wait_healthy([0], 60)
    assert len(keys_in(one_master, 0, "after")) == 20, "the old data is readable again"


@pytest.mark.parametrize("one_master", ["3.5"], indirect=True)
def test_a_backup_while_a_restore_is_part_way_names_the_restore(one_master: Sandbox) -> None:
    """The restore stopped etcd and was killed: the backup cannot reach etcd, and says that
    the restore in flight is why and how to end it, not only that no endpoint answered."""
    killed_after(one_master, "stop-all-containers")
    refused = command(one_master, 0, "backup", "/home/core/backup-during")
    assert refused.returncode == 5, refused.stderr
    assert "a `restore` (restore-" in refused.stderr and "is part-way on this host" in \
        refused.stderr, refused.stderr
    assert "next:  ocp-recovery status, then ocp-recovery resume" in refused.stderr
    assert not (one_master.root(0) / "var/home/core/backup-during").exists()
    assert command(one_master, 0, "resume").returncode == 0
    assert len(keys_in(one_master, 0, "before")) == 100


@pytest.mark.parametrize("one_master", ["3.5"], indirect=True)
def test_a_backup_while_a_restore_is_part_way_never_prunes_the_restores_set(
        one_master: Sandbox) -> None:
    """Killed in its wait, the restore left etcd serving the backup's data: a backup then
    works, says that it holds that state, and `--keep 1` keeps the set `resume` reads."""
    killed_after(one_master, "start-kubelet")
    one_master.wait_healthy([0], 60)
    backup_dir = one_master.root(0) / "var/home/core/backup"
    restores_set = sorted(p.name for p in backup_dir.iterdir())
    done = command(one_master, 0, "backup", "/home/core/backup", "--keep", "1")
    assert done.returncode == 0, done.stderr
    assert "a `restore` (restore-" in done.stdout and "is part-way on this host" in done.stdout
    assert "pruned /" not in done.stdout, done.stdout
    now = {p.name for p in backup_dir.iterdir()}
    assert set(restores_set) < now, "the restore's set is still there, beside the new one"
    assert command(one_master, 0, "resume").returncode == 0
    assert len(keys_in(one_master, 0, "before")) == 100
    assert keys_in(one_master, 0, "after") == set()
