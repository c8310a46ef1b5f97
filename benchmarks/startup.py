"""Start-up: `ocp-recovery --version` and `exit-codes` against a bare interpreter, and what
the heavy packages cost to import.

    python -m benchmarks.startup [--runs 10]

Every command pays start-up (an SRE's `--version` at 3 a.m., every CronJob run). Each run is
the installed entry point as a fresh process, from bytecode as the image runs it; `python -c
pass` is the floor. Budget: `--version` median <= 0.30 s. Import times are each package
alone in a fresh interpreter (`-X importtime`, its cumulative figure, median of the runs),
and structlog also the way toolbox.log loads it (rich hidden, at the first line written).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

from benchmarks.common import TOOL, Samples, compile_toolbox, machine, measure

BUDGET_SECONDS = 0.30
HEAVY_PACKAGES = ("typer", "structlog", "kubernetes", "grpc")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)
    compile_toolbox()
    print(f"machine: {machine()}")
    env = dict(os.environ)
    floor = Samples("python -c pass")
    version = Samples("ocp-recovery --version")
    exit_codes = Samples("ocp-recovery exit-codes")
    commands = ((floor, [sys.executable, "-c", "pass"]), (version, [TOOL, "--version"]),
                (exit_codes, [TOOL, "exit-codes"]))
    for _ in range(args.runs):  # interleaved, so a busy moment lands on all three alike
        for samples, command in commands:
            measure(command, env, samples)
    for samples, _ in commands:
        print(samples.line())
    verdict = "meets" if version.median <= BUDGET_SECONDS else "MISSES"
    print(f"--version: median {version.median:.3f} s (budget <= {BUDGET_SECONDS} s) {verdict}")
    loaded = [name for name in HEAVY_PACKAGES if name in import_seconds([TOOL, "--version"])]
    print(f"--version imports: {', '.join(loaded) or 'none'} (of {', '.join(HEAVY_PACKAGES)})")
    for name in HEAVY_PACKAGES:
        seconds = median_import(name, f"import {name}", args.runs)
        print(f"import {name:<44} {seconds:.3f} s")
    seconds = median_import("structlog", "from toolbox import log; log.get('bench').warning('x')",
                            args.runs)
    print(f"import {'structlog as toolbox.log loads it (no rich)':<44} {seconds:.3f} s")


def median_import(name: str, code: str, runs: int) -> float:
    return statistics.median(import_seconds([sys.executable, "-c", code])[name]
                             for _ in range(runs))


def import_seconds(argv: list[str]) -> dict[str, float]:
    """Every module the process imported, with its cumulative import time in seconds (the
    `-X importtime` lines read `import time: self [us] | cumulative | name`)."""
    done = subprocess.run(argv, env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=True, timeout=120)
    seconds = {}
    for line in done.stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if len(fields) == 3 and fields[1].strip().isdigit():
            seconds[fields[2].strip()] = int(fields[1]) / 1e6
    return seconds


if __name__ == "__main__":
    main()
