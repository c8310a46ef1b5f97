"""Every benchmark in one run: `python -m benchmarks [--size-mib N] [--rounds N]`.

Runs backup, verify and restore one after the other (each builds its own sandbox, since the
sandbox addresses are shared) and prints their figures. The drill times at scale take their
own options: `python -m benchmarks.drills --sizes 100,1024`.
"""

from __future__ import annotations

import sys

from benchmarks import backup, restore, verify

BENCHMARKS = (("backup", backup.main), ("verify", verify.main), ("restore", restore.main))


def main() -> None:
    for name, run in BENCHMARKS:
        print(f"== {name} ==", flush=True)
        run(sys.argv[1:])


if __name__ == "__main__":
    main()
