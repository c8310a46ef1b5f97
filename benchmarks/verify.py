"""`ocp-recovery snapshot verify` vs `sha256sum` of the same snapshot, A/B alternated.

    python -m benchmarks.verify [--size-mib 1024] [--rounds 5] [--etcd 3.5]

verify reads the whole file once (sha256 against the trailer) and walks the bbolt pages;
sha256sum is the floor for reading and hashing the same bytes. Target: ratio <= 1.2,
toolbox RSS < 100 MiB whatever the size.
"""

from __future__ import annotations

import shutil

from benchmarks.common import (
    TOOL,
    Bench,
    Samples,
    alternate,
    bench_sandbox,
    measure,
    report,
)


def main(argv: list[str] | None = None) -> None:
    with bench_sandbox(argv, __doc__.split("\n\n")[0]) as (bench, args):
        run(bench, args.rounds)


def run(bench: Bench, rounds: int) -> None:
    snapshot = bench.backup()
    host_path = "/home/core/bench/" + snapshot.name
    ours, theirs = Samples("ocp-recovery snapshot verify"), Samples("sha256sum")
    sha256sum = shutil.which("sha256sum") or "/usr/bin/sha256sum"
    alternate(rounds,
              lambda: measure([TOOL, "snapshot", "verify", host_path], bench.env, ours),
              lambda: measure([sha256sum, str(snapshot)], {"PATH": bench.env["PATH"]},
                              theirs))
    report("snapshot verify vs sha256sum", ours, theirs, 1.2)


if __name__ == "__main__":
    main()
