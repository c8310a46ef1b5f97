"""`member recover` (a blank master, certificates from the signer) killed after it got its
certificates, while etcd stops, after the member add and after etcd's manifest is back:
`resume` brings it up healthy with the data; `rollback` removes the member and gives back
the blank host as it was."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_etcd
from tests.e2e.helpers import assert_rollback_gives_back, assert_stopped_at, command, member_names
from toolbox.sandbox import workload
from toolbox.sandbox.cluster import Sandbox
from toolbox.sandbox.drills import start_signer

STEPS = ["request-certificates", "stop-etcd@0.05", "member-add", "start-etcd"]
IGNORED = ("var/lib/etcd", "var/lib/ocp-recovery", "run/etcd",
           # what the signer gave it: kept, so a second recover needs no second signing
           "etc/kubernetes/static-pod-resources/etcd-member")
pytestmark = pytest.mark.fault("member-recover")


@pytest.fixture
def blank_master(tmp_path: Path) -> Iterator[tuple[Sandbox, int, str]]:
    """master-2 lost and removed; a blank master added; the signer up on master-0."""
    require_etcd("3.5")
    sandbox = Sandbox.up(tmp_path / "sb", masters=3, etcd="3.5")
    try:
        with workload.kv_client(sandbox, 0) as kv:
            workload.write(kv, "before", 200)
        sandbox.stop_master(2)
        assert command(sandbox, 0, "member", "remove", "etcd-member-master-2").returncode == 0
        sandbox.wipe_master(2)
        new = sandbox.add_master()
        _, token, failures = start_signer(sandbox, 0, [sandbox.spec(new).dns_name],
                                          dict(os.environ))
        assert not failures
        yield sandbox, new, token
    finally:
        sandbox.down()


def recover(sandbox: Sandbox, index: int, token: str, *extra: str,
            kill: str | None = None) -> None:
    done = command(sandbox, index, "member", "recover", sandbox.spec(0).ip,
                   sandbox.spec(index).member_name, "--yes", *extra,
                   extra_env={"OCP_RECOVERY_SIGNER_TOKEN": token}, kill_after=kill)
    assert done.returncode == (-9 if kill else 0), done.stderr
    if kill:
        assert_stopped_at(sandbox, index, kill)


@pytest.mark.parametrize("step", STEPS)
def test_resume_after_a_kill(blank_master: tuple[Sandbox, int, str], step: str) -> None:
    sandbox, new, token = blank_master
    recover(sandbox, new, token, kill=step)
    resumed = command(sandbox, new, "resume", extra_env={"OCP_RECOVERY_SIGNER_TOKEN": token})
    assert resumed.returncode == 0, resumed.stderr
    sandbox.wait_healthy([0, 1, new], 60)
    assert member_names(sandbox) == sorted(["etcd-member-master-0", "etcd-member-master-1",
                                       sandbox.spec(new).member_name])
    assert len(workload.read_group(sandbox, new, "before")) == 200


@pytest.mark.parametrize("step", STEPS)
def test_rollback_after_a_kill(blank_master: tuple[Sandbox, int, str], step: str) -> None:
    sandbox, new, token = blank_master
    assert_rollback_gives_back(sandbox, new, IGNORED,
                               lambda: recover(sandbox, new, token, kill=step))
    assert member_names(sandbox) == ["etcd-member-master-0", "etcd-member-master-1"]
    sandbox.wait_healthy([0, 1], 30)
