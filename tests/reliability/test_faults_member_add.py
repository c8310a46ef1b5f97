"""`member add` killed (SIGKILL) after each step, and while etcd stops: `resume` brings the
member up healthy; `rollback` removes the member again and gives back this host as it was."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_etcd
from tests.e2e.helpers import assert_rollback_gives_back, assert_stopped_at, command, member_names
from toolbox.sandbox.cluster import Sandbox

STEPS = ["save-member-files", "stop-etcd", "set-aside-data-dir", "member-add",
         "write-environment", "start-etcd", "stop-etcd@0.05"]
IGNORED = ("var/lib/etcd", "var/lib/ocp-recovery", "run/etcd")
NAME = "etcd-member-master-2"
pytestmark = pytest.mark.fault("member-add")


@pytest.fixture
def removed_master(tmp_path: Path) -> Iterator[Sandbox]:
    """master-2 failed and was removed; it is back with valid certificates, not a member."""
    require_etcd("3.5")
    sandbox = Sandbox.up(tmp_path / "sb", masters=3, etcd="3.5")
    try:
        sandbox.stop_master(2)
        removed = command(sandbox, 0, "member", "remove", NAME, "--yes")
        assert removed.returncode == 0, removed.stderr
        sandbox.start_master(2)
        yield sandbox
    finally:
        sandbox.down()


def killed_after(sandbox: Sandbox, step: str) -> None:
    done = command(sandbox, 2, "member", "add", "127.0.0.11", NAME, "--yes",
                   kill_after=step)
    assert done.returncode == -9, done.stderr
    assert_stopped_at(sandbox, 2, step)


@pytest.mark.parametrize("step", STEPS)
def test_resume_after_a_kill(removed_master: Sandbox, step: str) -> None:
    killed_after(removed_master, step)
    resumed = command(removed_master, 2, "resume")
    assert resumed.returncode == 0, resumed.stderr
    removed_master.wait_healthy([0, 1, 2], 60)
    assert member_names(removed_master) == [f"etcd-member-master-{i}" for i in range(3)]


@pytest.mark.parametrize("step", STEPS)
def test_rollback_after_a_kill(removed_master: Sandbox, step: str) -> None:
    assert_rollback_gives_back(removed_master, 2, IGNORED,
                               lambda: killed_after(removed_master, step))
    assert member_names(removed_master) == ["etcd-member-master-0", "etcd-member-master-1"]
    removed_master.wait_healthy([0, 1], 30)
