"""Drills: rehearse a procedure of the guide end to end on a sandbox, timed."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from toolbox.context import Context, build_context
from toolbox.errors import DrillFailed, RecoveryError
from toolbox.procedures import backup, verify
from toolbox.sandbox import scratch, workload
from toolbox.sandbox.cluster import Sandbox


@dataclass
class DrillReport:
    name: str
    etcd: str
    phases: list[tuple[str, float]] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)

    @contextmanager
    def phase(self, label: str) -> Iterator[None]:
        started = time.monotonic()
        yield
        self.phases.append((label, time.monotonic() - started))

    @property
    def total(self) -> float:
        return sum(s for _, s in self.phases)

    def render(self) -> str:
        width = max(len(p) for p, _ in self.phases)
        lines = [f"drill {self.name} (etcd {self.etcd})"]
        lines += [f"  {label:<{width}}  {seconds:7.2f} s" for label, seconds in self.phases]
        lines.append(f"  {'total':<{width}}  {self.total:7.2f} s")
        lines += [f"  ok: {fact}" for fact in self.facts]
        return "\n".join(lines)


def master_context(sandbox: Sandbox, index: int, environ: Mapping[str, str]) -> Context:
    """The Context ocp-recovery builds when run on sandbox master `index`."""
    return build_context(sandbox.env_vars(index, dict(environ)), log_format="json")


def backup_drill(environ: Mapping[str, str], *, etcd: str = "3.5", keys: int = 2000,
                 directory: Path | None = None, keep: bool = False) -> DrillReport:
    """Guide 1.1 on master-0 of a 3-master sandbox, then prove the snapshot: keys written
    before the backup come back from it, keys written after do not."""
    report = DrillReport("backup", etcd)
    where = directory or Path(tempfile.mkdtemp(prefix="ocpr-drill-", dir="/var/tmp"))
    with report.phase("sandbox up (3 masters)"):
        sandbox = Sandbox.up(where / "sandbox", masters=3, etcd=etcd)
    with _kept_on_failure(sandbox, keep):
        _run_backup_drill(sandbox, environ, report, keys)
    return report


@contextmanager
def _kept_on_failure(sandbox: Sandbox, keep: bool) -> Iterator[None]:
    """Tear the sandbox down after a drill; after a failure power it off but keep its files
    (logs, host roots) and say where they are."""
    try:
        yield
    except RecoveryError as exc:
        sandbox.power_off()
        exc.state = f"drill sandbox powered off, files kept in {sandbox.dir}"
        exc.next_step = exc.next_step or f"ocp-recovery sandbox down --dir {sandbox.dir}"
        raise
    except BaseException:
        sandbox.power_off()
        raise
    if not keep:
        sandbox.down()


def _run_backup_drill(sandbox: Sandbox, environ: Mapping[str, str], report: DrillReport,
                      count: int) -> None:
    with workload.kv_client(sandbox, 0) as kv, report.phase(f"write {count} keys (before)"):
        before = workload.write(kv, "before", count)
    ctx = master_context(sandbox, 0, environ)
    with report.phase("backup on master-0"):
        result = backup.run(ctx, backup.BackupRequest("/home/core/backup", progress=False))
    with workload.kv_client(sandbox, 1) as kv, report.phase("write 100 keys (after)"):
        after = workload.write(kv, "after", 100)
    with report.phase("snapshot verify"):
        verify.run(ctx, "/home/core/backup")
    with report.phase("restore to scratch + read back"), \
            scratch.restored_etcd(sandbox.binaries, result.snapshot.path) as restored:
        got_before = scratch.read_prefix(restored, "/kubernetes.io/configmaps/drill-before/")
        got_after = scratch.read_prefix(restored, "/kubernetes.io/configmaps/drill-after/")
    _check(set(got_before) == set(before), f"{len(got_before)} of {len(before)} keys "
           "written before the backup are in the snapshot")
    _check(all(got_before[k] == workload.value_for(k, 1024) for k in before),
           "values in the snapshot differ from those written")
    _check(not got_after, f"{len(got_after)} keys written after the backup are in it")
    report.facts += [
        f"{len(before)} keys written before the backup read back from the restored snapshot",
        f"0 of {len(after)} keys written after the backup are in it",
        f"snapshot {result.snapshot.size} bytes, trailer sha256 verified while streaming",
        f"archive holds kube-apiserver-pod-"
        f"{result.manifest['static_resources']['kube_apiserver_revision']}",
    ]


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise DrillFailed(what, next_step="read the sandbox logs under the drill directory")


DRILLS: dict[str, Callable[..., DrillReport]] = {"backup": backup_drill}
