"""Restore vs bare `etcdutl snapshot restore` of the same snapshot, A/B alternated.

    python -m benchmarks.restore [--size-mib 1024] [--rounds 5] [--etcd 3.5]

The toolbox side is the whole procedure on a 1-master sandbox (preflight with the
snapshot's full integrity check, stop static pods, kubelet and containers, set the data dir
aside, restore, extract the static resources, start everything) without waiting for
health; the other side is etcdutl (etcdctl for 3.4) writing a data dir. Target: ratio
<= 1.10, toolbox RSS < 100 MiB whatever the size.
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
        spec = sandbox.spec(0)
        cluster = f"{spec.member_name}={spec.peer_url}"
        binaries = sandbox.binaries
        bare_tool = binaries.etcdutl or binaries.etcdctl
        ours = Samples("ocp-recovery restore (--no-wait)")
        theirs = Samples(f"{bare_tool.name} snapshot restore")
        state = sandbox.root(0) / "var/lib/ocp-recovery"
        scratch = work / "bare-restore"
        for _ in range(args.rounds):
            measure([tool, "restore", "/home/core/bench", "--initial-cluster", cluster,
                     "--yes", "--no-wait"], env, ours)
            for stash in state.glob("restore-*"):
                shutil.rmtree(stash)  # the previous data dir, set aside by the restore
            shutil.rmtree(scratch, ignore_errors=True)
            measure([str(bare_tool), "snapshot", "restore", str(snapshot), "--data-dir",
                     str(scratch), "--name", spec.member_name, "--initial-cluster", cluster,
                     "--initial-advertise-peer-urls", spec.peer_url],
                    {"PATH": env["PATH"], "ETCDCTL_API": "3"}, theirs)
        print(ours.line())
        print(theirs.line())
        print(ratio_line("restore vs bare snapshot restore", ours, theirs, 1.10))
        print(f"toolbox peak RSS {max(ours.peak_rss_kib) / 1024:.1f} MiB (target < 100 MiB)")
    finally:
        sandbox.down()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
