"""Ctrl-C and SIGTERM, counted as well as raised. gRPC runs Python's signal handlers from
inside a blocking call and can drop the exception they raise (seen: a Ctrl-C during a
health probe was lost and the wait went on for its full timeout). The etcd client compares
the count before and after each call and raises what was lost."""

from __future__ import annotations

import signal
from types import FrameType

from toolbox.errors import Interrupted

_received: list[int] = []  # the signals handled, in order


def install() -> None:
    """The CLI's handlers: Ctrl-C raises KeyboardInterrupt as Python's own does, SIGTERM
    (a pod being stopped) raises Interrupted."""
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)


def received() -> int:
    """How many signals have been handled so far: the mark to pass to `raise_lost`."""
    return len(_received)


def raise_lost(mark: int) -> None:
    """Raise for a signal handled since `mark` whose exception did not arrive."""
    if len(_received) > mark:
        _raise_for(_received[-1])


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    _received.append(signum)
    _raise_for(signum)


def _raise_for(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Interrupted(f"terminated by {signal.Signals(signum).name}")
