"""`ocp-recovery snapshot verify` vs `sha256sum` of the same snapshot, A/B alternated.

    python -m benchmarks.verify [--size-mib 1024] [--rounds 5] [--etcd 3.5]

verify reads the whole file once (sha256 against the trailer) and walks the bbolt pages;
sha256sum is the floor for reading and hashing the same bytes. Target: ratio <= 1.2,
toolbox RSS < 100 MiB whatever the size.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks.backup import fill
from benchmarks.common import Samples, machine, measure, ratio_line
from toolbox.sandbox.cluster import Sandbox


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--etcd", default="3.5")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ocpr-bench-", dir="/var/tmp"))
    sandbox = Sandbox.up(work / "sandbox", masters=1, etcd=args.etcd)
    try:
        db_size, fill_seconds = fill(sandbox, args.size_mib)
        print(f"machine: {machine()}")
        print(f"etcd {args.etcd}: db {db_size / 2**20:.0f} MiB filled in {fill_seconds:.0f} s")
        env = {**sandbox.env_vars(0, dict(os.environ)), "OCP_RECOVERY_LOG_FORMAT": "json"}
        tool = str(Path(sys.executable).with_name("ocp-recovery"))
        measure([tool, "backup", "/home/core/bench"], env, Samples("backup"))
        [snapshot] = (sandbox.root(0) / "var/home/core/bench").glob("snapshot_*.db")
        host_path = "/home/core/bench/" + snapshot.name
        ours, theirs = Samples("ocp-recovery snapshot verify"), Samples("sha256sum")
        sha256sum = shutil.which("sha256sum") or "/usr/bin/sha256sum"
        for _ in range(args.rounds):
            measure([tool, "snapshot", "verify", host_path], env, ours)
            measure([sha256sum, str(snapshot)], {"PATH": env["PATH"]}, theirs)
        print(ours.line())
        print(theirs.line())
        print(ratio_line("snapshot verify vs sha256sum", ours, theirs, 1.2))
        print(f"toolbox peak RSS {max(ours.peak_rss_kib) / 1024:.1f} MiB (target < 100 MiB)")
    finally:
        sandbox.down()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
