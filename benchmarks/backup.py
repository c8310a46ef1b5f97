"""Backup vs `etcdctl snapshot save` of the same member, A/B alternated, same run.

    python -m benchmarks.backup [--size-mib 1024] [--rounds 5] [--etcd 3.5]

Builds a 1-master sandbox, fills its etcd with Kubernetes-sized values (many revisions,
compacted), then alternates `ocp-recovery backup` and `etcdctl snapshot save`, each a
fresh process writing to the same disk; prints medians, min/max, the time ratio and the
toolbox's peak RSS (target: ratio <= 1.05, RSS < 100 MiB whatever the size).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Samples, machine, measure, ratio_line
from toolbox.sandbox import workload
from toolbox.sandbox.cluster import Sandbox
from toolbox.sandbox.layout import MasterSpec

VALUE_BYTES = 96 * 1024  # a large ConfigMap/Secret; several revisions of each
KEYS_PER_TXN = 12        # under etcd's default 1.5 MiB request limit


def fill(sandbox: Sandbox, size_mib: int) -> tuple[int, float]:
    """Write until the db holds about size_mib; overwrite keys so revisions pile up, and
    compact half of history so free pages exist, as in a live cluster."""
    started = time.monotonic()
    written = 0
    keys = max(1, (size_mib << 20) // VALUE_BYTES // 3)
    with workload.kv_client(sandbox, 0, timeout=60) as kv:
        rounds = 0
        while True:
            for start in range(0, keys, KEYS_PER_TXN):
                batch = [f"/kubernetes.io/secrets/bench/s-{i:07d}"
                         for i in range(start, min(keys, start + KEYS_PER_TXN))]
                kv.transaction(compare=[], failure=[], success=[
                    kv.transactions.put(k, os.urandom(VALUE_BYTES)) for k in batch])
                written += len(batch)
            rounds += 1
            status = kv.status()
            if rounds == 2:
                kv.compact(_revision(kv) // 2)
            if status.db_size >= size_mib << 20:
                return status.db_size, time.monotonic() - started


def _revision(kv) -> int:  # type: ignore[no-untyped-def]
    return int(kv.get_response("/").header.revision)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--etcd", default="3.5")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()

    work = args.dir or Path(tempfile.mkdtemp(prefix="ocpr-bench-", dir="/var/tmp"))
    sandbox = Sandbox.up(work / "sandbox", masters=1, etcd=args.etcd)
    try:
        db_size, fill_seconds = fill(sandbox, args.size_mib)
        print(f"machine: {machine()}")
        print(f"etcd {args.etcd}: db {db_size / 2**20:.0f} MiB filled in {fill_seconds:.0f} s")
        env = sandbox.env_vars(0, dict(os.environ))
        env["OCP_RECOVERY_LOG_FORMAT"] = "json"
        tls = sandbox.client_tls
        ours, theirs = Samples("ocp-recovery backup"), Samples("etcdctl snapshot save")
        out_ours = sandbox.root(0) / "var/home/core/bench"
        out_theirs = work / "etcdctl-out"
        tool = shutil.which("ocp-recovery") or str(Path(sys.executable).with_name(
            "ocp-recovery"))
        for _ in range(args.rounds):
            shutil.rmtree(out_ours, ignore_errors=True)
            measure([tool, "backup", "/home/core/bench", "--no-progress"], env, ours)
            shutil.rmtree(out_theirs, ignore_errors=True)
            out_theirs.mkdir()
            measure([str(sandbox.binaries.etcdctl), "--endpoints", MasterSpec(0).client_url,
                     "--cacert", str(tls.ca), "--cert", str(tls.cert), "--key", str(tls.key),
                     "snapshot", "save", str(out_theirs / "snapshot.db")],
                    {"PATH": env["PATH"], "ETCDCTL_API": "3"}, theirs)
        print(ours.line())
        print(theirs.line())
        print(ratio_line("backup vs etcdctl snapshot save", ours, theirs, 1.05))
        print(f"toolbox peak RSS {max(ours.peak_rss_kib) / 1024:.1f} MiB (target < 100 MiB)")
    finally:
        sandbox.down()
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
