"""Running the installed commands as real processes against sandbox masters."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.conftest import assert_host_unchanged, require_etcd
from toolbox.sandbox import workload
from toolbox.sandbox.cluster import Sandbox

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


def command(sandbox: Sandbox, index: int, *args: str, extra_env: dict[str, str] | None = None,
            program: str = "ocp-recovery", timeout: float = 180,
            kill_after: str | None = None, kill_when: str | None = None
            ) -> subprocess.CompletedProcess[str]:
    """The installed `program` on master `index`; `kill_after`/`kill_when` run it under
    tests.faults, which SIGKILLs it at that point."""
    env = sandbox.env_vars(index, dict(os.environ))
    env.update(extra_env or {})
    argv = [str(BIN / program), *args]
    if kill_after or kill_when:
        faults = [f"--kill-after={kill_after}"] if kill_after else []
        faults += [f"--kill-when={kill_when}"] if kill_when else []
        argv = [sys.executable, "-m", "tests.faults", *faults, program, *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)


def cluster_of(sandbox: Sandbox, masters: list[int]) -> str:
    return ",".join(f"{sandbox.spec(i).member_name}={sandbox.spec(i).peer_url}"
                    for i in masters)


keys_in = workload.read_group


def member_names(sandbox: Sandbox, index: int = 0) -> list[str]:
    """The member list as master `index` sees it, sorted; an unstarted member has no name."""
    with sandbox.client(index) as client:
        return sorted(m.name or "(unstarted)" for m in client.members())


def assert_rollback_gives_back(sandbox: Sandbox, index: int, ignored: tuple[str, ...],
                               break_off: Callable[[], object]) -> None:
    """Whatever `break_off` leaves part-way on master `index`, `rollback` succeeds and that
    host's tree (but `ignored`) is exactly what it was before."""
    with assert_host_unchanged(sandbox.root(index), ignored):
        break_off()
        rolled = command(sandbox, index, "rollback", "--yes")
        assert rolled.returncode == 0, rolled.stderr


def assert_stopped_at(sandbox: Sandbox, index: int, step: str) -> str:
    """After a kill_after=`step` run: `status` shows the step done, or for
    NAME@SECONDS (killed inside it) stopped in it (nothing runs it now) or, a fast step,
    already done."""
    status = command(sandbox, index, "status").stdout
    name, during, _ = step.partition("@")
    assert f"done     {name}" in status or (during and f"stopped  {name}" in status), status
    return status


@contextlib.contextmanager
def backed_up_sandbox(directory: Path, *, masters: int, keys: int,
                      etcd: str = "3.5") -> Iterator[Sandbox]:
    """A sandbox whose master-0 wrote `keys` keys of group "before", then backed them up
    into /home/core/backup; taken down afterwards."""
    require_etcd(etcd)
    sandbox = Sandbox.up(directory, masters=masters, etcd=etcd)
    try:
        with workload.kv_client(sandbox, 0) as kv:
            workload.write(kv, "before", keys)
        done = command(sandbox, 0, "backup", "/home/core/backup")
        assert done.returncode == 0, done.stderr
        yield sandbox
    finally:
        sandbox.down()
