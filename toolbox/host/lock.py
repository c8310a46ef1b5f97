"""One operation at a time per host: an flock on `<state dir>/lock`.

The kernel drops an flock when its holder dies, so a lock can never be stuck; the holder's
description stays in the file, which is how a stale lock (a killed run) is recognised and
reported instead of silently ignored.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from toolbox import log
from toolbox.errors import OperationInFlight
from toolbox.host.files import ensure_private_dir

_log = log.get(__name__)


@dataclass(frozen=True)
class LockHolder:
    pid: int
    operation: str
    started: float

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        return f"`{self.operation}` (pid {self.pid}, started {when})"


def _read_holder(path: Path) -> LockHolder | None:
    try:
        raw = json.loads(path.read_text() or "null")
        return LockHolder(int(raw["pid"]), str(raw["operation"]), float(raw["started"]))
    except (FileNotFoundError, ValueError, TypeError, KeyError):
        return None


@contextlib.contextmanager
def host_lock(state_dir: Path, operation: str) -> Iterator[LockHolder | None]:
    """Hold the host lock for `operation`. Yields the stale holder found, if any."""
    ensure_private_dir(state_dir)
    path = state_dir / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(path)
            who = holder.describe() if holder else "another process"
            raise OperationInFlight(
                f"{who} is running on this host; one operation at a time",
                next_step="wait for it to finish (`ocp-recovery status` shows it), then run "
                "this command again",
            ) from None
        stale = _read_holder(path)
        if stale is not None:
            _log.warning("lock.stale", holder_pid=stale.pid, holder_operation=stale.operation,
                         note="a previous run ended without releasing the lock")
        me = LockHolder(os.getpid(), operation, time.time())
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me.__dict__).encode(), 0)
        try:
            yield stale
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def current_holder(state_dir: Path) -> LockHolder | None:
    """Who holds the host lock right now (None when nobody does), without taking it."""
    path = state_dir / "lock"
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_holder(path) or LockHolder(0, "unknown", 0.0)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
