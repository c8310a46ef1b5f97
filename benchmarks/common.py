"""Timing and peak memory of child processes, and the figures' summary lines."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field


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
    (its VmHWM, sampled: wait4's figure would include the tools it runs, e.g. etcdutl)."""
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


def ratio_line(name: str, ours: Samples, theirs: Samples, target: float) -> str:
    ratio = ours.median / theirs.median
    verdict = "meets" if ratio <= target else "MISSES"
    return f"{name}: ratio {ratio:.3f} (target <= {target}) {verdict}"
