"""Backup, verify and restore at one size on one sandbox, filled once: for the sizes whose
fill is the longest part (8 GiB: about 4 minutes here).

    python -m benchmarks.scale [--size-mib 8192] [--rounds 3] [--etcd 3.5]

The same rounds, anchors and targets as benchmarks.backup, .verify and .restore (which
each fill a sandbox of their own), then one restore to healthy (with its wait); etcd's
quota is raised to fit the size, as an operator raises ETCD_QUOTA_BACKEND_BYTES.
"""

from __future__ import annotations

import time

from benchmarks import backup, restore, verify
from benchmarks.common import bench_sandbox


def main(argv: list[str] | None = None) -> None:
    with bench_sandbox(argv, __doc__.split("\n\n")[0]) as (bench, args):
        # The restore last: it replaces the member's data dir (with the same data).
        for name, run in (("backup", backup.run), ("verify", verify.run),
                          ("restore", restore.run)):
            started = time.monotonic()
            print(f"== {name} ==", flush=True)
            run(bench, args.rounds)
            print(f"({name}: {time.monotonic() - started:.0f} s)", flush=True)
        restore.run_to_healthy(bench)


if __name__ == "__main__":
    main()
