"""One host command's cost: the toolbox's executor (subprocess, with its timeout) against the
`sh` library, bare and with `_timeout`, each running `true`, interleaved.

    python -m benchmarks.host_commands [--runs 200]

`sh` is not a dependency; it is compared here because the design card names it (install it
into the venv to compare: `.venv/bin/pip install sh`). Every host command keeps a timeout,
and `sh`'s `_timeout` is a watcher thread that polls every 0.1 s and is joined before the
call returns. A restore runs about seven host commands.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import machine
from toolbox.host.exec import Executor

RESTORE_HOST_COMMANDS = 7  # systemctl is-active, stop, daemon-reload, start; crictl pods, ps
TIMEOUT_SECONDS = 60.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args(argv)
    print(f"machine: {machine()}")
    env = dict(os.environ)
    executor = Executor("direct", Path("/"), env, default_timeout=TIMEOUT_SECONDS)
    calls: dict[str, Callable[[], object]] = {
        "executor (subprocess, timeout)": lambda: executor.run_host(["true"])}
    try:
        import sh
    except ImportError:
        print("sh is not installed: `.venv/bin/pip install sh` to compare with it")
    else:
        true = sh.Command("true")
        calls["sh, bare"] = lambda: true(_env=env)
        calls["sh, _timeout"] = lambda: true(_env=env, _timeout=TIMEOUT_SECONDS)
    seconds: dict[str, list[float]] = {label: [] for label in calls}
    for call in calls.values():
        call()  # the first call's imports and path look-up are not a command's cost
    for _ in range(args.runs):  # interleaved, so a busy moment lands on all alike
        for label, call in calls.items():
            started = time.perf_counter()
            call()
            seconds[label].append(time.perf_counter() - started)
    for label, runs in seconds.items():
        median = statistics.median(runs)
        print(f"{label:<32} median {median * 1000:6.1f} ms  min {min(runs) * 1000:6.1f}"
              f"  max {max(runs) * 1000:6.1f}  per restore ({RESTORE_HOST_COMMANDS} commands)"
              f" {median * RESTORE_HOST_COMMANDS:.2f} s  (n={len(runs)})")


if __name__ == "__main__":
    main()
