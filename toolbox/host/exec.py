"""The one executor every external command goes through.

Host commands (systemctl, crictl) run in the host's namespaces: `nsenter` into PID 1 when
the toolbox runs in a container with `--pid=host`, `chroot` into the host root otherwise,
or `direct` when the toolbox runs on the host itself (and in the sandbox, whose shims play
systemctl and crictl). Tool commands (etcdutl, etcdctl) are the toolbox's own binaries and
always run locally, on paths under the host root.

Never a shell; argv is logged at debug; the child's environment is the one resolved in
Context, with the proxy variables removed so no command sends etcd traffic through a proxy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from toolbox import log
from toolbox.errors import CommandFailed, PreconditionFailed, WaitTimedOut

_log = log.get(__name__)

HOST_EXEC_MODES = ("nsenter", "chroot", "direct")


def pid1_is_the_host() -> bool:
    """With `--pid=host` (or `oc debug node`), PID 1 is the host's init, in another mount
    namespace than ours; without it, PID 1 is this container's own first process."""
    try:
        return os.readlink("/proc/1/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    except OSError:
        return False


def default_mode(host_root: Path) -> tuple[str, str | None]:
    """The mode to use when none was asked for, and a warning when it is a fallback."""
    if host_root == Path("/"):
        return "direct", None
    if pid1_is_the_host():
        return "nsenter", None
    return "chroot", (f"PID 1 is not the host's (run the container with --pid=host "
                      f"--privileged): host commands run with `chroot {host_root}`, which "
                      "reaches the host's systemd and CRI-O only through their sockets")


@dataclass(frozen=True)
class Completed:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float


class Executor:
    def __init__(
        self,
        mode: str,
        host_root: Path,
        env: Mapping[str, str],
        default_timeout: float,
    ):
        if mode not in HOST_EXEC_MODES:
            raise ValueError(f"host exec mode {mode!r} is not one of {HOST_EXEC_MODES}")
        self.mode = mode
        self.host_root = host_root
        self.env = dict(env)
        self.default_timeout = default_timeout

    def host_argv(self, argv: list[str]) -> list[str]:
        if self.mode == "nsenter":
            return ["nsenter", "--target", "1", "--mount", "--uts", "--ipc", "--net", "--pid",
                    "--", *argv]
        if self.mode == "chroot":
            return ["chroot", str(self.host_root), *argv]
        return list(argv)

    def run_host(self, argv: list[str], *, timeout: float | None = None,
                 ok_codes: tuple[int, ...] = (0,)) -> Completed:
        """A command of the host (systemctl, crictl), in the host's namespaces."""
        return self._run(self.host_argv(argv), timeout=timeout, ok_codes=ok_codes)

    def run_tool(self, argv: list[str], *, timeout: float | None = None,
                 ok_codes: tuple[int, ...] = (0,)) -> Completed:
        """One of the toolbox's own binaries (etcdutl, etcdctl), run here on host-root paths."""
        return self._run(argv, timeout=timeout, ok_codes=ok_codes)

    def find_tool(self, name: str) -> str | None:
        return shutil.which(name, path=self.env.get("PATH"))

    def _run(self, argv: list[str], *, timeout: float | None,
             ok_codes: tuple[int, ...]) -> Completed:
        limit = timeout if timeout is not None else self.default_timeout
        program = argv[0] if "/" in argv[0] else self.find_tool(argv[0])
        if program is None:
            raise PreconditionFailed(
                f"command `{argv[0]}` was not found on PATH ({self.env.get('PATH', '')})",
                next_step=f"install {argv[0]} or put it on PATH, then run the same command again",
            )
        _log.debug("exec.start", argv=argv, timeout=limit)
        started = time.monotonic()
        try:
            # subprocess's own timeout: it waits on the child, where a polling watcher (the
            # `sh` library's) cost 100 ms per call, seven times in a restore.
            done = subprocess.run([program, *argv[1:]], env=self.env, timeout=limit,
                                  stdin=subprocess.DEVNULL, capture_output=True, check=False)
        except subprocess.TimeoutExpired as exc:
            raise WaitTimedOut(
                f"`{' '.join(argv)}` did not finish within {limit:.0f}s and was killed",
            ) from exc
        except PermissionError as exc:
            raise PreconditionFailed(
                f"permission denied running `{program}`: {exc}",
                next_step="run ocp-recovery as root (in the container: --privileged)",
            ) from exc
        if done.returncode not in ok_codes:
            raise CommandFailed(argv, done.returncode, _text(done.stderr))
        seconds = time.monotonic() - started
        result = Completed(argv, done.returncode, _text(done.stdout), _text(done.stderr),
                           seconds)
        _log.debug("exec.done", argv=argv, rc=result.returncode, seconds=round(seconds, 3))
        return result


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")
