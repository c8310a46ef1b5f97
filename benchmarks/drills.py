"""Drill wall times at scale: how quorum-restore and quorum-loss grow with the db.

    python -m benchmarks.drills [--sizes 100,1024] [--drills quorum-restore] [--etcd 3.5]

Each drill runs whole on a fresh 3-master sandbox whose db is first grown to the size
(workload.fill: large values overwritten and half compacted). Reported per size: the time
from the restore command to a healthy one-member cluster with the data (quorum-restore),
and from the restore to three healthy members with the data (quorum-loss: restore, two
blank masters, both recovered through the signer), then the growth from the smallest size.
"""

from __future__ import annotations

import argparse
import os
import time

from benchmarks.common import compile_toolbox, machine
from toolbox import log
from toolbox.sandbox.drills import DRILLS

# The phases that make up "from the command to a healthy cluster with the data".
RECOVERY_PHASES = {
    "quorum-restore": ("restore master-0 alone (to healthy)",),
    "quorum-loss": ("restore master-0 alone (to healthy)", "add two blank masters",
                    "signer on master-0, recover both in turn (to healthy)"),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1024", help="db sizes in MiB, comma separated")
    parser.add_argument("--drills", default=",".join(RECOVERY_PHASES),
                        help="which, comma separated (quorum-loss at 8 GiB holds five "
                        "copies of the db: about 60 GiB of disk)")
    parser.add_argument("--etcd", default="3.5")
    args = parser.parse_args(argv)
    chosen = args.drills.split(",")
    unknown = set(chosen) - set(RECOVERY_PHASES)
    if unknown:
        parser.error(f"no drill {', '.join(sorted(unknown))}: one of "
                     f"{', '.join(RECOVERY_PHASES)}")
    log.configure("json")  # the procedures' logs to stderr, the figures alone on stdout
    compile_toolbox()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"machine: {machine()}")
    results: dict[str, dict[int, float]] = {name: {} for name in chosen}
    for name in chosen:
        phases = RECOVERY_PHASES[name]
        for size in sizes:
            started = time.monotonic()
            report = DRILLS[name](dict(os.environ), etcd=args.etcd, keys=1000, fill_mib=size)
            took = dict(report.phases)
            recovery = sum(took[p] for p in phases)
            results[name][size] = recovery
            print(f"{name} at {size} MiB: to healthy with the data {recovery:.1f} s "
                  f"({', '.join(f'{p}: {took[p]:.1f} s' for p in phases)}); whole drill "
                  f"{time.monotonic() - started:.0f} s", flush=True)
    for name, by_size in results.items():
        base = by_size[sizes[0]]
        growth = ", ".join(f"{size} MiB x{by_size[size] / base:.2f}" for size in sizes[1:])
        print(f"{name}: {sizes[0]} MiB {base:.1f} s; {growth}")


if __name__ == "__main__":
    main()
