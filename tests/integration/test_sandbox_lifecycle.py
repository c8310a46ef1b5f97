"""Sandbox lifecycle: lost hosts and new blank hosts (its own sandbox, not the shared one)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import require_etcd
from tests.integration.test_sandbox import wait_for
from toolbox.etcd.cluster import parse_env_file
from toolbox.sandbox.layout import DOMAIN


@pytest.mark.parametrize("etcd", ["3.5"])
def test_lost_and_new_masters(run_cli, tmp_path: Path, etcd: str) -> None:
    require_etcd(etcd)
    directory = tmp_path / "sb"
    run_cli(["sandbox", "up", "--masters", "3", "--dir", str(directory), "--etcd", etcd])
    try:
        run_cli(["sandbox", "stop-master", "2", "--dir", str(directory)])
        status = run_cli(["sandbox", "status", "--dir", str(directory)]).stdout
        assert "master-2  127.0.0.13  agent down" in status and "etcd down" in status
        run_cli(["sandbox", "wipe-master", "2", "--dir", str(directory)])
        assert not (directory / "masters/master-2/root").exists()
        run_cli(["sandbox", "add-master", "--dir", str(directory)])
        root = directory / "masters/master-3/root"
        member = root / "etc/kubernetes/static-pod-resources/etcd-member"
        assert sorted(p.name for p in member.iterdir()) == ["ca.crt", "metric-ca.crt",
                                                            "root-ca.crt"]
        assert not list((root / "etc/kubernetes/static-pod-resources").glob("kube-apiserver-*"))
        env = (root / "run/etcd/environment")
        wait_for(env.exists)
        assert parse_env_file(env.read_text()).exported == {"ETCD_DISCOVERY_SRV": DOMAIN}
        assert "already exists" in run_cli(
            ["sandbox", "up", "--dir", str(directory)], exit_code=4).stderr
    finally:
        run_cli(["sandbox", "down", "--dir", str(directory)])
    assert not directory.exists()
    assert processes_mentioning(str(directory)) == []


def processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                found.append(int(proc.name))
    return found
