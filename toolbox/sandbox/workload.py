"""Data to put in a sandbox cluster: keys shaped like a Kubernetes cluster's."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import etcd3

from toolbox.sandbox.cluster import Sandbox
from toolbox.sandbox.layout import ETCD_QUOTA_43, EtcdConf, MasterSpec


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
FILL_WRITERS = 4         # concurrent puts: etcd batches them into one fsync
# Three members filling one disk to 8 GiB stall it for over a minute at a time (etcd:
# "leader failed to send out heartbeat on time"), so a put may wait that long.
FILL_PUT_TIMEOUT = 300   # seconds for one put of the fill
# etcd keeps snapshot-count raft entries (and 5000 more for slow followers) in memory:
# 4.3's 100000 entries of 96 KiB would be the whole fill, several GiB per member at 8 GiB.
FILL_SNAPSHOT_COUNT = 1000


def conf_for(size_mib: int) -> EtcdConf:
    """etcd.conf for a sandbox that will be filled to size_mib: 4.3's 7 GiB quota, or raised
    to 1 GiB above the size (as an operator raises ETCD_QUOTA_BACKEND_BYTES), since etcd
    refuses writes once the db reaches its quota; and a snapshot count that keeps the fill's
    raft log from holding the db in memory."""
    return EtcdConf(quota=max(ETCD_QUOTA_43, (size_mib + 1024) << 20),
                    snapshot_count=FILL_SNAPSHOT_COUNT)


def fill(sandbox: Sandbox, size_mib: int, index: int = 0) -> tuple[int, float]:
    """Write until the db holds about size_mib; overwrite keys so revisions pile up, and
    compact half of history so free pages exist, as in a live cluster. One put per key, as
    the API server writes, so no raft entry is larger than a value."""
    started = time.monotonic()
    count = max(FILL_WRITERS, (size_mib << 20) // VALUE_BYTES // 3)
    names = [f"/kubernetes.io/secrets/bench/s-{i:07d}" for i in range(count)]

    def put_share(writer: int) -> None:
        with kv_client(sandbox, index, timeout=FILL_PUT_TIMEOUT) as kv:
            for name in names[writer::FILL_WRITERS]:
                kv.put(name, os.urandom(VALUE_BYTES))

    with kv_client(sandbox, index, timeout=FILL_PUT_TIMEOUT) as kv, \
            ThreadPoolExecutor(FILL_WRITERS) as writers:
        rounds = 0
        while True:
            for done in [writers.submit(put_share, w) for w in range(FILL_WRITERS)]:
                done.result()
            rounds += 1
            status = kv.status()
            if rounds == 2:
                kv.compact(int(kv.get_response("/").header.revision) // 2)
            if status.db_size >= size_mib << 20:
                return status.db_size, time.monotonic() - started
