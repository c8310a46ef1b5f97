"""Running the installed commands as real processes against sandbox masters."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import tree_fingerprint
from toolbox.sandbox import workload
from toolbox.sandbox.cluster import Sandbox

BIN = Path(sys.executable).parent


def command(sandbox: Sandbox, index: int, *args: str, extra_env: dict[str, str] | None = None,
            program: str = "ocp-recovery", timeout: float = 180
            ) -> subprocess.CompletedProcess[str]:
    env = sandbox.env_vars(index, dict(os.environ))
    env.update(extra_env or {})
    return subprocess.run([str(BIN / program), *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


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
    before = tree_fingerprint(sandbox.root(index), ignored)
    break_off()
    rolled = command(sandbox, index, "rollback")
    assert rolled.returncode == 0, rolled.stderr
    assert tree_fingerprint(sandbox.root(index), ignored) == before


def assert_stopped_at(sandbox: Sandbox, index: int, step: str) -> str:
    """After OCP_RECOVERY_FAULT_KILL_AFTER=`step`: `status` shows the step done, or for
    NAME@SECONDS (killed inside it) running or, a fast step, already done."""
    status = command(sandbox, index, "status").stdout
    name, during, _ = step.partition("@")
    assert f"done     {name}" in status or (during and f"running  {name}" in status), status
    return status
