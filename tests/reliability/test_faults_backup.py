"""Backup when a member is frozen or killed mid-stream, or the disk fills: the next endpoint
serves or the backup fails cleanly, nothing hangs, and no partial file is left as if good."""

from __future__ import annotations

import errno
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.integration.test_sandbox_lifecycle import processes_mentioning
from toolbox.errors import WaitTimedOut
from toolbox.etcd.client import EtcdClient
from toolbox.etcd.snapshot import TRAILER
from toolbox.host.files import partial_file
from toolbox.procedures import backup
from toolbox.sandbox import workload
from toolbox.sandbox.cluster import Sandbox

pytestmark = pytest.mark.fault("backup")


def etcd_pid(sandbox: Sandbox, index: int) -> int:
    [pid] = [p for p in processes_mentioning(str(sandbox.root(index)))
             if "--listen-client-urls" in Path(f"/proc/{p}/cmdline").read_bytes().decode(
                 errors="replace")]
    return pid


def test_frozen_first_endpoint_is_skipped(run_cli, sandbox: Sandbox) -> None:  # type: ignore[no-untyped-def]
    pid = etcd_pid(sandbox, 2)
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        out = run_cli(["--log-format", "json", "--dial-timeout", "1", "--endpoints",
                       "https://127.0.0.13:2379,https://127.0.0.11:2379", "backup",
                       "/home/core/backup-frozen"], env=sandbox.env_vars(0, dict(os.environ)))
        assert time.monotonic() - started < 15
    finally:
        os.kill(pid, signal.SIGCONT)
    [summary] = [d for d in out.json_lines() if d.get("event") == "backup.summary"]
    manifest = json.loads(next((sandbox.root(0) / "var/home/core/backup-frozen").glob(
        "backup_*.json")).read_text())
    assert manifest["etcd"]["endpoint"] == "https://127.0.0.11:2379"
    assert summary["revision"] == manifest["etcd"]["revision"]


def _stream(sandbox: Sandbox, index: int, idle: float):  # type: ignore[no-untyped-def]
    client = EtcdClient.connect_any((sandbox.spec(index).client_url,), sandbox.client_tls,
                                    dial=5, stream_idle=idle)
    return client, client.snapshot_chunks()


def test_a_member_frozen_mid_stream_is_cancelled_after_the_idle_timeout(
        sandbox: Sandbox) -> None:
    # More than gRPC buffers ahead of the reader, so the reader sees the silence.
    workload.fill(sandbox, 48, index=1)
    client, chunks = _stream(sandbox, 1, idle=2)
    pid = etcd_pid(sandbox, 1)
    with client:
        next(chunks)
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(WaitTimedOut, match="sent no snapshot data for 2s"):
                for _ in chunks:
                    pass
            assert time.monotonic() - started < 10
        finally:
            os.kill(pid, signal.SIGCONT)


def test_a_slow_disk_on_our_side_is_not_taken_for_a_silent_member(sandbox: Sandbox) -> None:
    """The idle timeout counts only the wait for etcd: a write that stalls longer than it
    (a full page cache, NFS) must not cancel a healthy stream."""
    client, chunks = _stream(sandbox, 0, idle=1)
    with client:
        size = len(next(chunks))
        time.sleep(3)  # three idle timeouts spent "writing" the first message
        size += sum(len(chunk) for chunk in chunks)
    assert size == client_db_size(sandbox, 0) + TRAILER


def client_db_size(sandbox: Sandbox, index: int) -> int:
    with EtcdClient.connect_any((sandbox.spec(index).client_url,), sandbox.client_tls,
                                dial=5, stream_idle=30) as client:
        return client.status().db_size


def test_only_a_frozen_endpoint_fails_within_the_timeout(run_cli, sandbox: Sandbox) -> None:  # type: ignore[no-untyped-def]
    pid = etcd_pid(sandbox, 2)
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        err = run_cli(["--dial-timeout", "1", "--endpoints", "https://127.0.0.13:2379",
                       "backup", "/home/core/backup-frozen-only"],
                      env=sandbox.env_vars(0, dict(os.environ)), exit_code=5).stderr
        assert time.monotonic() - started < 10
    finally:
        os.kill(pid, signal.SIGCONT)
    assert "127.0.0.13:2379" in err and "no answer before the deadline" in err
    assert not (sandbox.root(0) / "var/home/core/backup-frozen-only").exists()


def test_member_killed_mid_stream_fails_cleanly_or_the_next_serves(
        run_cli, sandbox: Sandbox) -> None:  # type: ignore[no-untyped-def]
    workload.fill(sandbox, 64)  # a stream that lasts long enough to be cut
    target = sandbox.root(0) / "var/home/core/backup-killed"
    victim = etcd_pid(sandbox, 2)

    def kill_once_streaming() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if target.is_dir() and any(target.glob("*.partial")):
                os.kill(victim, signal.SIGKILL)
                return
            time.sleep(0.001)

    killer = threading.Thread(target=kill_once_streaming)
    killer.start()
    outcome = run_cli(["--log-format", "json", "--dial-timeout", "1", "--endpoints",
                       "https://127.0.0.13:2379,https://127.0.0.11:2379", "backup",
                       "/home/core/backup-killed"], env=sandbox.env_vars(0, dict(os.environ)),
                      exit_code=None)
    killer.join()
    assert not list(target.glob("*.partial")), "a partial file was left behind"
    if outcome.code == 0:  # retried on the next endpoint: a whole, verified backup
        manifest = json.loads(next(target.glob("backup_*.json")).read_text())
        assert manifest["etcd"]["endpoint"] == "https://127.0.0.11:2379"
        assert run_cli(["--host-root", str(sandbox.root(0)), "--host-exec", "direct",
                        "snapshot", "verify", "/home/core/backup-killed"]).code == 0
    else:
        assert outcome.code == 5, outcome.stderr
        assert not list(target.glob("snapshot_*.db"))
    sandbox.wait_healthy([0, 1, 2], 60)  # its kubelet restarted it


@pytest.mark.parametrize(("error", "exit_code", "said"), [
    (errno.ENOSPC, 7, "ran out of space while writing static_kuberesources_"),
    (errno.EIO, 14, "Input/output error"),
], ids=["disk-full", "io-error"])
def test_an_archive_failing_beside_the_stream_leaves_nothing(
        run_cli, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, error: int,  # type: ignore[no-untyped-def]
        exit_code: int, said: str) -> None:
    """The archive is written while the snapshot streams; its failure fails the backup and
    takes the finished snapshot with it. (The space check refuses a disk that is too small
    before anything is written, and root reads any file, so the failure is injected into
    the archive's own write.)"""
    workload.fill(sandbox, 16)

    def failing_archive(revision_dir: Path, kubernetes_dir: Path, target: Path) -> None:
        with partial_file(target) as out:
            out.write(b"\x1f\x8b")
            raise OSError(error, os.strerror(error))

    monkeypatch.setattr(backup, "write_revision_archive", failing_archive)
    err = run_cli(["backup", "/home/core/backup-archive-fails"],
                  env=sandbox.env_vars(0, dict(os.environ)), exit_code=exit_code).stderr
    assert said in err
    assert "state: unchanged" in err and "next:" in err
    assert not (sandbox.root(0) / "var/home/core/backup-archive-fails").exists()
