"""Prove what a snapshot holds: restore it into a scratch data dir with the real
etcdutl/etcdctl, start a throwaway etcd on loopback, and read the keys back."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import etcd3

from toolbox.context import Timeouts
from toolbox.errors import WaitTimedOut
from toolbox.sandbox.binaries import EtcdBinaries

SCRATCH_IP = "127.0.0.10"
SCRATCH_TIMEOUT = 30  # seconds for an empty db's restore, and again to serve


def _free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def restore_command(binaries: EtcdBinaries, snapshot: Path, data_dir: Path, name: str,
                    peer_url: str) -> list[str]:
    tool = binaries.etcdutl or binaries.etcdctl
    return [str(tool), "snapshot", "restore", str(snapshot), "--data-dir", str(data_dir),
            "--name", name, "--initial-cluster", f"{name}={peer_url}",
            "--initial-advertise-peer-urls", peer_url, "--skip-hash-check=false"]


@contextlib.contextmanager
def restored_etcd(binaries: EtcdBinaries, snapshot: Path) -> Iterator[etcd3.Etcd3Client]:
    """A plain-HTTP single etcd serving the restored snapshot; removed afterwards."""
    # The restore and etcd's first open each read and write the db: an 8 GiB one takes
    # minutes on a slow disk, as the toolbox's own waits allow.
    timeout = Timeouts().scaled(SCRATCH_TIMEOUT, snapshot.stat().st_size)
    work = Path(tempfile.mkdtemp(prefix="ocpr-scratch-"))
    peer_port, client_port = _free_port(SCRATCH_IP), _free_port(SCRATCH_IP)
    peer_url = f"http://{SCRATCH_IP}:{peer_port}"
    env = {"PATH": "/usr/bin:/bin", "ETCDCTL_API": "3"}
    proc = None
    try:
        subprocess.run(restore_command(binaries, snapshot, work / "data", "scratch", peer_url),
                       check=True, capture_output=True, timeout=timeout, env=env)
        with open(work / "etcd.log", "wb") as log:
            proc = subprocess.Popen(
                [str(binaries.etcd), "--name", "scratch", "--data-dir", str(work / "data"),
                 "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                 "--listen-client-urls", f"http://{SCRATCH_IP}:{client_port}",
                 "--advertise-client-urls", f"http://{SCRATCH_IP}:{client_port}"],
                stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while True:
            # python3-etcd3 marks an endpoint failed for minutes: a new client per attempt.
            client = etcd3.client(host=SCRATCH_IP, port=client_port, timeout=5)
            try:
                client.status()
                break
            except Exception as exc:
                client.close()
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise WaitTimedOut(f"the scratch etcd on {SCRATCH_IP}:{client_port} did "
                                       f"not serve within {timeout:.0f}s: {exc}") from exc
                time.sleep(0.05)
        try:
            yield client
        finally:
            client.close()
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)


def read_prefix(client: etcd3.Etcd3Client, prefix: str) -> dict[str, bytes]:
    return {meta.key.decode(): value for value, meta in client.get_prefix(prefix)}
