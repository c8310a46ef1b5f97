"""Backup when a member is frozen: the next endpoint serves, and nothing hangs."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from tests.integration.test_sandbox_lifecycle import processes_mentioning
from toolbox.sandbox.cluster import Sandbox


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
