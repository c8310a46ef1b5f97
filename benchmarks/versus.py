"""This checkout against an earlier commit, on the same filled member, in the same run.

    python -m benchmarks.versus --base REV [--size-mib 1024] [--rounds 3] [--etcd 3.5]

A budget such as "the restore ratio no worse than before this work" is only meaningful
within one run (this machine's round-to-round spread is wider than the differences). REV
is checked out into a scratch worktree and run from it (PYTHONPATH, the same venv); each
round runs the base's backup, this checkout's, and `etcdctl snapshot save`, then the same
for the restore against `etcdutl snapshot restore`. Prints each side's ratio.
"""

from __future__ import annotations

import argparse
import compileall
import shutil
import subprocess
from pathlib import Path

from benchmarks.common import TOOL, Samples, bench_sandbox, measure, ratio_line

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--base", required=True)
    known, rest = parser.parse_known_args(argv)
    base_tree = Path(f"/var/tmp/ocpr-bench-base-{known.base}")
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--force", "--detach",
                    str(base_tree), known.base], check=True, capture_output=True)
    try:
        compileall.compile_dir(base_tree / "toolbox", quiet=1)
        _run(base_tree, known.base, rest)
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                        str(base_tree)], check=False, capture_output=True)


def _run(base_tree: Path, base: str, argv: list[str]) -> None:
    with bench_sandbox(argv, __doc__.split("\n\n")[0]) as (bench, args):
        # The base's command line may take global options only before the command.
        json_logs = ["--log-format", "json"]
        sides = {"base": {**bench.env, "PYTHONPATH": str(base_tree)}, "head": bench.env}
        tls, spec = bench.sandbox.client_tls, bench.sandbox.spec(0)
        etcd_env = {"PATH": bench.env["PATH"], "ETCDCTL_API": "3"}
        backups = {side: Samples(f"backup ({side})") for side in sides}
        restores = {side: Samples(f"restore --no-wait ({side})") for side in sides}
        etcdctl, etcdutl = Samples("etcdctl snapshot save"), Samples("etcdutl snapshot restore")
        snapshot = bench.backup()
        cluster = f"{spec.member_name}={spec.peer_url}"
        out = bench.sandbox.root(0) / "var/home/core/versus"
        state = bench.sandbox.root(0) / "var/lib/ocp-recovery"
        scratch = bench.work / "bare"
        for _ in range(args.rounds):
            for side, env in sides.items():
                shutil.rmtree(out, ignore_errors=True)
                measure([TOOL, *json_logs, "backup", "/home/core/versus", "--no-progress"],
                        env, backups[side])
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir()
            measure([str(bench.sandbox.binaries.etcdctl), "--endpoints", spec.client_url,
                     "--cacert", str(tls.ca), "--cert", str(tls.cert), "--key", str(tls.key),
                     "snapshot", "save", str(scratch / "snapshot.db")], etcd_env, etcdctl)
            for side, env in sides.items():
                measure([TOOL, *json_logs, "restore", "/home/core/bench", "--initial-cluster",
                         cluster, "--rewind-healthy-cluster", "--yes", "--no-wait"], env,
                        restores[side])
                for stash in state.glob("restore-*"):
                    shutil.rmtree(stash)
            shutil.rmtree(scratch, ignore_errors=True)
            tool = bench.sandbox.binaries.etcdutl or bench.sandbox.binaries.etcdctl
            measure([str(tool), "snapshot", "restore", str(snapshot), "--data-dir",
                     str(scratch), "--name", spec.member_name, "--initial-cluster", cluster,
                     "--initial-advertise-peer-urls", spec.peer_url], etcd_env, etcdutl)
        print(f"base: {base}")
        for samples in (*backups.values(), etcdctl, *restores.values(), etcdutl):
            print(samples.line())
        for side in sides:
            print(ratio_line(f"backup ({side}) vs etcdctl", backups[side], etcdctl, 1.05))
        for side in sides:
            print(ratio_line(f"restore ({side}) vs etcdutl", restores[side], etcdutl, 1.10))


if __name__ == "__main__":
    main()
