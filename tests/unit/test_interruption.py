"""A Ctrl-C whose exception gRPC dropped is raised once the call returns; one that arrived
before the call, and was raised then, is not raised twice."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# A child process: the handlers are the CLI's, installed for the whole process.
DROPPED = """
import os, signal, sys
from toolbox import interruption
interruption.install()
mark = interruption.received()
try:
    os.kill(os.getpid(), signal.{name})   # the handler raises here...
except BaseException:
    pass                                    # ...and, as inside gRPC, the exception is lost
try:
    interruption.raise_lost(mark)
except BaseException as exc:
    print(type(exc).__name__, exc, sep=": " if str(exc) else "")
    after = interruption.received()
    interruption.raise_lost(after)          # already raised: nothing more
    print("once")
"""


@pytest.mark.parametrize(("name", "raised"), [
    ("SIGINT", "KeyboardInterrupt"), ("SIGTERM", "Interrupted: terminated by SIGTERM")])
def test_a_dropped_signal_is_raised_when_the_call_returns(name: str, raised: str) -> None:
    done = subprocess.run([sys.executable, "-c", DROPPED.replace("{name}", name)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.stdout.split("\n")[:2] == [raised, "once"], done.stdout + done.stderr

