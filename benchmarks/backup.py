"""Backup vs `etcdctl snapshot save` of the same member, A/B alternated, same run.

    python -m benchmarks.backup [--size-mib 1024] [--rounds 5] [--etcd 3.5]

Builds a 1-master sandbox, fills its etcd with Kubernetes-sized values (many revisions,
compacted), then runs `ocp-recovery backup` and `etcdctl snapshot save` round by round (the
first of the two alternating), each a fresh process writing to the same disk; prints
medians, min/max, the ratio of the medians and the spread of the round-by-round ratios, and
the toolbox's peak RSS (target: ratio <= 1.05, RSS < 100 MiB whatever the size).
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
    tls = bench.sandbox.client_tls
    ours, theirs = Samples("ocp-recovery backup"), Samples("etcdctl snapshot save")
    out_ours = bench.sandbox.root(0) / "var/home/core/bench"
    out_theirs = bench.work / "etcdctl-out"

    def ours_side() -> None:
        shutil.rmtree(out_ours, ignore_errors=True)
        measure([TOOL, "backup", "/home/core/bench", "--no-progress"], bench.env, ours)

    def etcdctl_side() -> None:
        shutil.rmtree(out_theirs, ignore_errors=True)
        out_theirs.mkdir()
        measure([str(bench.sandbox.binaries.etcdctl), "--endpoints",
                 bench.sandbox.spec(0).client_url, "--cacert", str(tls.ca), "--cert",
                 str(tls.cert), "--key", str(tls.key), "snapshot", "save",
                 str(out_theirs / "snapshot.db")],
                {"PATH": bench.env["PATH"], "ETCDCTL_API": "3"}, theirs)

    alternate(rounds, ours_side, etcdctl_side)
    report("backup vs etcdctl snapshot save", ours, theirs, 1.05)
    for out in (out_ours, out_theirs):
        shutil.rmtree(out)  # at 8 GiB the next benchmark on this disk needs the room


if __name__ == "__main__":
    main()
