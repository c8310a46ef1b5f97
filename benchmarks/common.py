"""Timing and peak memory of child processes, and the figures' summary lines."""

from __future__ import annotations

import argparse
import compileall
import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import toolbox
from toolbox.host.paths import resolve_under
from toolbox.sandbox import workload
from toolbox.sandbox.cluster import Sandbox


@dataclass
class Samples:
    label: str
    seconds: list[float] = field(default_factory=list)
    peak_rss_kib: list[int] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def line(self) -> str:
        return (f"{self.label:<34} median {self.median:7.3f} s  min {min(self.seconds):7.3f}"
                f"  max {max(self.seconds):7.3f}  peak RSS {max(self.peak_rss_kib) / 1024:6.1f}"
                f" MiB  (n={len(self.seconds)})")


def measure(argv: list[str], env: dict[str, str], samples: Samples) -> None:
    """Run argv to completion; record its wall time and the peak RSS of that process alone
    (its VmHWM, sampled: wait4's figure would include the tools it runs, e.g. etcdutl).
    The previous run's dirty pages are written first, so neither side pays for the other's."""
    os.sync()
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            try:
                with open(f"/proc/{proc.pid}/status") as status_file:
                    for line in status_file:
                        if line.startswith("VmHWM:"):
                            peak[0] = max(peak[0], int(line.split()[1]))
            except (OSError, ValueError):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, _usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {err[-2000:]}")
    samples.seconds.append(elapsed)
    samples.peak_rss_kib.append(peak[0])


TOOL = str(Path(sys.executable).with_name("ocp-recovery"))


@dataclass
class Bench:
    sandbox: Sandbox
    work: Path
    env: dict[str, str]     # ocp-recovery acting on the sandbox's master-0

    def backup(self, directory: str = "/home/core/bench") -> Path:
        """One backup (not measured) in an emptied `directory`; returns its snapshot file."""
        shutil.rmtree(resolve_under(self.sandbox.root(0), directory), ignore_errors=True)
        measure([TOOL, "backup", directory], self.env, Samples("setup"))
        [snapshot] = resolve_under(self.sandbox.root(0), directory).glob("snapshot_*.db")
        return snapshot


@contextlib.contextmanager
def bench_sandbox(argv: list[str] | None, description: str) -> Iterator[tuple[Bench, Any]]:
    """The common command line (--size-mib, --rounds, --etcd), a 1-master sandbox filled to
    the size, the machine line; everything removed afterwards."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--etcd", default="3.5")
    args = parser.parse_args(argv)
    compile_toolbox()
    work = Path(tempfile.mkdtemp(prefix="ocpr-bench-", dir="/var/tmp"))
    try:
        sandbox = Sandbox.up(work / "sandbox", masters=1, etcd=args.etcd,
                             etcd_conf=workload.conf_for(args.size_mib))
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    try:
        db_size, fill_seconds = workload.fill(sandbox, args.size_mib)
        print(f"machine: {machine()}")
        print(f"etcd {args.etcd}: db {db_size / 2**20:.0f} MiB filled in {fill_seconds:.0f} s")
        env = {**sandbox.env_vars(0, dict(os.environ)), "OCP_RECOVERY_LOG_FORMAT": "json"}
        yield Bench(sandbox, work, env), args
    finally:
        sandbox.down()
        shutil.rmtree(work, ignore_errors=True)


def compile_toolbox() -> None:
    """Bytecode for the toolbox, as the image ships it: under PYTHONDONTWRITEBYTECODE (set
    on many machines) every timed run would otherwise compile the toolbox again, 0.06 s."""
    compileall.compile_dir(Path(toolbox.__file__).parent, quiet=1)


def alternate(rounds: int, ours: Callable[[], None], theirs: Callable[[], None]) -> None:
    """Run both sides once per round, the first side alternating (ours first in even rounds),
    so neither always runs on the other's warm caches or right after its writes."""
    for number in range(rounds):
        for side in ((ours, theirs) if number % 2 == 0 else (theirs, ours)):
            side()


def report(name: str, ours: Samples, theirs: Samples, target: float) -> None:
    print(ours.line())
    print(theirs.line())
    print(ratio_line(name, ours, theirs, target))
    print(f"toolbox peak RSS {max(ours.peak_rss_kib) / 1024:.1f} MiB (target < 100 MiB)")


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = "unknown cpu"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.platform()}"


MIN_ROUNDS = 7  # fewer: the spread of this machine decides the verdict, not the code


def ratio_line(name: str, ours: Samples, theirs: Samples, target: float) -> str:
    """The ratio of the medians, the spread of the round-by-round ratios, and a verdict
    that counts only the median, and only over enough rounds."""
    ratio = ours.median / theirs.median
    rounds = [a / b for a, b in zip(ours.seconds, theirs.seconds, strict=True)]
    if len(rounds) < MIN_ROUNDS:
        verdict = f"not judged: {len(rounds)} rounds, at least {MIN_ROUNDS} needed"
    else:
        verdict = "meets" if ratio <= target else "MISSES"
    return (f"{name}: ratio {ratio:.3f} (target <= {target}) {verdict}; round by round "
            f"median {statistics.median(rounds):.3f}, {min(rounds):.3f}-{max(rounds):.3f}")
