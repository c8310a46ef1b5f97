"""Fault injection for the reliability tests, kept out of the product: no variable or flag
of a real run can make it kill itself.

    python -m tests.faults [--kill-after STEP[@SECONDS]] [--kill-when MODULE:FUNCTION]
                           -- PROGRAM ARG...

runs the installed entry point PROGRAM (`ocp-recovery` or a 4.3 script name) in this process,
and SIGKILLs it:
  --kill-after STEP        once the journal records step STEP done;
  --kill-after STEP@S      S seconds after step STEP starts (in the middle of a long step);
  --kill-when MODULE:FUNC  as soon as FUNC of MODULE returns (a point inside a step).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def kill_after_step(spec: str) -> None:
    from toolbox.journal import DONE, RUNNING, Journal

    name, _, seconds = spec.partition("@")
    original = Journal.mark

    def mark(self: Journal, step: str, state: str) -> None:
        original(self, step, state)
        if step != name or self.path is None:
            return
        if seconds and state == RUNNING:
            threading.Timer(float(seconds), _kill).start()
        elif not seconds and state == DONE:
            _kill()

    Journal.mark = mark  # type: ignore[method-assign]


def kill_when_returns(spec: str) -> None:
    module_name, _, function_name = spec.partition(":")
    module = importlib.import_module(module_name)
    original: Callable[..., Any] = getattr(module, function_name)

    @functools.wraps(original)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        _kill()
        return result

    setattr(module, function_name, wrapped)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", allow_abbrev=False)
    parser.add_argument("--kill-after")
    parser.add_argument("--kill-when")
    parser.add_argument("program")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    given = parser.parse_args(argv)
    if given.kill_after:
        kill_after_step(given.kill_after)
    if given.kill_when:
        kill_when_returns(given.kill_when)
    [entry] = entry_points(group="console_scripts", name=given.program)
    sys.argv = [given.program, *given.args]
    result = entry.load()()
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
