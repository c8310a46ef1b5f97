"""Data to put in a sandbox cluster: keys shaped like a Kubernetes cluster's."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator

import etcd3

from toolbox.sandbox.cluster import Sandbox
from toolbox.sandbox.layout import ETCD_QUOTA_43, MasterSpec


def kv_client(sandbox: Sandbox, index: int, timeout: float = 10) -> etcd3.Etcd3Client:
    tls = sandbox.client_tls
    return etcd3.client(host=MasterSpec(index).ip, port=2379, ca_cert=str(tls.ca),
                        cert_key=str(tls.key), cert_cert=str(tls.cert), timeout=timeout)


def value_for(key: str, size: int) -> bytes:
    """Deterministic, incompressible-looking bytes, so a reader can check them."""
    seed = hashlib.sha256(key.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def keys(group: str, count: int) -> Iterator[str]:
    for i in range(count):
        yield f"/kubernetes.io/configmaps/drill-{group}/cm-{i:06d}"


def read_group(sandbox: Sandbox, index: int, group: str) -> set[str]:
    """The keys of `group` that master `index` serves (a linearizable read)."""
    with kv_client(sandbox, index) as kv:
        return {m.key.decode() for _, m in kv.get_prefix(
            f"/kubernetes.io/configmaps/drill-{group}/")}


TXN_OPS = 100  # etcd's default --max-txn-ops is 128


def write(client: etcd3.Etcd3Client, group: str, count: int, size: int = 1024) -> list[str]:
    """Put `count` keys, a transaction per hundred (one raft round and fsync each)."""
    written = list(keys(group, count))
    for start in range(0, len(written), TXN_OPS):
        batch = written[start:start + TXN_OPS]
        client.transaction(compare=[], failure=[], success=[
            client.transactions.put(k, value_for(k, size)) for k in batch])
    return written


VALUE_BYTES = 96 * 1024  # a large ConfigMap/Secret; several revisions of each
KEYS_PER_TXN = 12        # under etcd's default 1.5 MiB request limit
FILL_TXN_TIMEOUT = 300   # seconds for one transaction of the fill


def quota_for(size_mib: int) -> int:
    """The etcd quota a sandbox needs to be filled to size_mib: 4.3's 7 GiB, or raised to
    1 GiB above the size (as an operator raises ETCD_QUOTA_BACKEND_BYTES), since etcd
    refuses writes once the db reaches its quota."""
    return max(ETCD_QUOTA_43, (size_mib + 1024) << 20)


def fill(sandbox: Sandbox, size_mib: int, index: int = 0) -> tuple[int, float]:
    """Write until the db holds about size_mib; overwrite keys so revisions pile up, and
    compact half of history so free pages exist, as in a live cluster."""
    started = time.monotonic()
    keys = max(1, (size_mib << 20) // VALUE_BYTES // 3)
    # Three members filling one disk to 8 GiB stall it for over a minute at a time
    # (etcd: "leader failed to send out heartbeat on time"): each transaction may wait.
    with kv_client(sandbox, index, timeout=FILL_TXN_TIMEOUT) as kv:
        rounds = 0
        while True:
            for start in range(0, keys, KEYS_PER_TXN):
                batch = [f"/kubernetes.io/secrets/bench/s-{i:07d}"
                         for i in range(start, min(keys, start + KEYS_PER_TXN))]
                kv.transaction(compare=[], failure=[], success=[
                    kv.transactions.put(k, os.urandom(VALUE_BYTES)) for k in batch])
            rounds += 1
            status = kv.status()
            if rounds == 2:
                kv.compact(int(kv.get_response("/").header.revision) // 2)
            if status.db_size >= size_mib << 20:
                return status.db_size, time.monotonic() - started
