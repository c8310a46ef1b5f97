"""Every benchmark in one run: `python -m benchmarks [--size-mib N] [--rounds N]`.

Runs start-up and host commands (no sandbox, their own run counts), then backup, verify,
restore and snapshot ls one after the other (each builds its own sandbox, since the sandbox
addresses are shared) and prints their figures. The drill times at scale take their own
options: `python -m benchmarks.drills --sizes 100,1024`; so does the objects restore, which
needs a kube-apiserver: `python -m benchmarks.objects restore`.
"""

from __future__ import annotations

import sys

from benchmarks import backup, host_commands, objects, restore, startup, verify

# Their options are not the sandbox's (--size-mib, --rounds): each runs with its defaults.
FIXED_BENCHMARKS = (("startup", startup.main), ("host commands", host_commands.main))
BENCHMARKS = (("backup", backup.main), ("verify", verify.main), ("restore", restore.main),
              ("snapshot ls", objects.ls_main))


def main() -> None:
    for name, run_fixed in FIXED_BENCHMARKS:
        print(f"== {name} ==", flush=True)
        run_fixed([])
    for name, run in BENCHMARKS:
        print(f"== {name} ==", flush=True)
        run(sys.argv[1:])


if __name__ == "__main__":
    main()
