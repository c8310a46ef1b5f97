"""Restore vs bare `etcdutl snapshot restore` of the same snapshot, A/B alternated.

    python -m benchmarks.restore [--size-mib 1024] [--rounds 5] [--etcd 3.5]

The toolbox side is the whole procedure on a 1-master sandbox (preflight with the
snapshot's full integrity check, stop static pods, kubelet and containers, set the data dir
aside, restore, extract the static resources, start everything) without waiting for
health; the other side is etcdutl (etcdctl for 3.4) writing a data dir. Target: ratio
<= 1.10, toolbox RSS < 100 MiB whatever the size.
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


def _restore_argv(bench: Bench, *extra: str) -> list[str]:
    """The toolbox's restore of the bench backup on master-0, the cluster rewound."""
    spec = bench.sandbox.spec(0)
    return [TOOL, "restore", "/home/core/bench", "--initial-cluster",
            f"{spec.member_name}={spec.peer_url}", "--rewind-healthy-cluster", "--yes", *extra]


def run(bench: Bench, rounds: int) -> None:
    snapshot = bench.backup()
    spec = bench.sandbox.spec(0)
    cluster = f"{spec.member_name}={spec.peer_url}"
    binaries = bench.sandbox.binaries
    bare_tool = binaries.etcdutl or binaries.etcdctl
    ours = Samples("ocp-recovery restore (--no-wait)")
    theirs = Samples(f"{bare_tool.name} snapshot restore")
    state = bench.sandbox.root(0) / "var/lib/ocp-recovery"
    scratch = bench.work / "bare-restore"

    def ours_side() -> None:
        measure(_restore_argv(bench, "--no-wait"), bench.env, ours)
        for stash in state.glob("restore-*"):
            shutil.rmtree(stash)  # the previous data dir, set aside by the restore

    def bare_side() -> None:
        shutil.rmtree(scratch, ignore_errors=True)
        measure([str(bare_tool), "snapshot", "restore", str(snapshot), "--data-dir",
                 str(scratch), "--name", spec.member_name, "--initial-cluster", cluster,
                 "--initial-advertise-peer-urls", spec.peer_url],
                {"PATH": bench.env["PATH"], "ETCDCTL_API": "3"}, theirs)
        shutil.rmtree(scratch)  # at 8 GiB, two restored copies may not fit the disk

    alternate(rounds, ours_side, bare_side)
    report("restore vs bare snapshot restore", ours, theirs, 1.10)


def run_to_healthy(bench: Bench) -> None:
    """Once, the whole restore with its last step: the wait until etcd, started on the
    restored db, serves with a leader (what grows with the db beyond etcdutl's part)."""
    healthy = Samples("ocp-recovery restore (to healthy)")
    measure(_restore_argv(bench), bench.env, healthy)
    print(healthy.line())


if __name__ == "__main__":
    main()
