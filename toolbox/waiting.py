"""Waiting for the host or a cluster to reach a state: always with a timeout, and saying
what is awaited and how far it got."""

from __future__ import annotations

import time
from collections.abc import Callable

from toolbox import log
from toolbox.errors import WaitTimedOut

_log = log.get(__name__)
PROGRESS_EVERY = 10.0   # seconds between progress lines while nothing changes


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str,
               next_step: str, progress: Callable[[], str] | None = None) -> None:
    """Poll with a short back-off (0.02 s growing to 2 s) until `condition` or timeout:
    what is already done is seen at once, what takes minutes costs a check every 2 s.
    `progress` says where the wait stands ("2 of 3 masters answer"): logged when it changes,
    and every PROGRESS_EVERY seconds, so a long wait is never silent."""
    started = time.monotonic()
    deadline = started + timeout
    delay = 0.02
    said, said_at = "", started
    while not condition():
        now = time.monotonic()
        if now + delay > deadline:
            where = f" ({said})" if said else ""
            raise WaitTimedOut(f"waited {timeout:.0f}s for {what}{where}", next_step=next_step)
        if now - started >= 1.0:
            state = progress() if progress is not None else ""
            if state != said or now - said_at >= PROGRESS_EVERY:
                _log.info("wait.progress", waiting_for=what, state=state or "not yet",
                          seconds=round(now - started), timeout=round(timeout))
                said, said_at = state, now
        time.sleep(delay)
        delay = min(2.0, delay * 1.5)
