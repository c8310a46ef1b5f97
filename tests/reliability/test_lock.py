"""One operation at a time per host: a second run is refused naming the first, and a lock
left by a killed run is recognised and reported, never silently taken over."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.hostile import master_root, refused
from toolbox.errors import OperationInFlight
from toolbox.host.lock import host_lock

pytestmark = pytest.mark.fault("lock")

# A `restore` that holds the lock until killed (`hold`) or dies holding it (`die`).
HOLDER = """
import os, sys, time
from pathlib import Path
from toolbox.host.lock import host_lock
with host_lock(Path(sys.argv[1]), "restore"):
    print("held", flush=True)
    if sys.argv[2] == "die":
        os._exit(9)
    time.sleep(60)
"""


def start_holder(state: Path, mode: str) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(state), mode],
                               stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(Path.cwd())})
    assert process.stdout and process.stdout.readline().strip() == "held"
    return process


def died_holding_the_lock(state: Path) -> int:
    process = start_holder(state, "die")
    assert process.wait(timeout=60) == 9
    return process.pid


@pytest.fixture
def host(tmp_path: Path) -> Path:
    return master_root(tmp_path / "host")


@pytest.fixture
def state(host: Path) -> Path:
    return host / "var/lib/ocp-recovery"


@pytest.fixture
def holder(state: Path) -> Iterator[subprocess.Popen[str]]:
    process = start_holder(state, "hold")
    yield process
    process.kill()
    process.wait()


def test_second_operation_is_refused_naming_the_first(run_cli, host: Path, state: Path,  # type: ignore[no-untyped-def]
                                                      holder: subprocess.Popen[str]) -> None:
    with pytest.raises(OperationInFlight, match=rf"`restore` \(pid {holder.pid}"), \
            host_lock(state, "backup"):
        pass
    err = refused(run_cli, host, ["rollback", "--yes"], 10).stderr
    assert f"`restore` (pid {holder.pid}" in err and "one operation at a time" in err


def test_a_stale_lock_from_a_dead_process_is_detected_and_reported(run_cli, host: Path,  # type: ignore[no-untyped-def]
                                                                   state: Path) -> None:
    dead = died_holding_the_lock(state)
    with host_lock(state, "backup") as stale:
        assert stale is not None and stale.pid == dead and stale.operation == "restore"
    assert oct((state / "lock").stat().st_mode & 0o777) == "0o600"
    # Through the CLI: the stale holder is reported in the log, then the command goes on.
    dead = died_holding_the_lock(state)
    err = run_cli(["--host-root", str(host), "--host-exec", "direct", "--log-format", "json",
                   "rollback", "--yes"], exit_code=4).stderr
    assert '"event": "lock.stale"' in err and f'"holder_pid": {dead}' in err
    assert '"holder_operation": "restore"' in err and "nothing to roll back" in err
