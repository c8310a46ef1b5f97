import time
from pathlib import Path

import pytest

from toolbox.errors import CommandFailed, PreconditionFailed, WaitTimedOut
from toolbox.host.exec import Executor


def executor(mode: str = "direct", root: Path = Path("/")) -> Executor:
    return Executor(mode, root, {"PATH": "/usr/bin:/bin"}, default_timeout=30)


def test_direct_runs_without_a_shell() -> None:
    done = executor().run_host(["echo", "a b", "$HOME"])
    assert done.stdout == "a b $HOME\n" and done.returncode == 0


def test_failure_carries_rc_and_stderr() -> None:
    with pytest.raises(CommandFailed) as caught:
        executor().run_host(["sh", "-c", "echo boom >&2; exit 3"])
    assert caught.value.returncode == 3 and "boom" in caught.value.stderr


def test_allowed_codes() -> None:
    assert executor().run_host(["sh", "-c", "exit 3"], ok_codes=(0, 3)).returncode == 3


def test_timeout_kills_and_says_so() -> None:
    started = time.monotonic()
    with pytest.raises(WaitTimedOut, match="did not finish within"):
        executor().run_host(["sleep", "30"], timeout=0.5)
    assert time.monotonic() - started < 10


def test_missing_command_is_a_precondition() -> None:
    with pytest.raises(PreconditionFailed, match="not found on PATH"):
        executor().run_tool(["etcdutl-that-does-not-exist"])


def test_host_argv_per_mode(tmp_path: Path) -> None:
    assert executor("nsenter").host_argv(["systemctl", "stop", "kubelet"])[:3] == [
        "nsenter", "--target", "1"]
    assert executor("chroot", tmp_path).host_argv(["crictl", "ps"]) == [
        "chroot", str(tmp_path), "crictl", "ps"]
    # tools are the toolbox's own: never entered into the host
    assert executor("chroot", tmp_path).run_tool(["true"]).returncode == 0
