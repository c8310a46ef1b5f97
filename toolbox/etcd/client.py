"""A small etcd v3 gRPC client: status, members, key count, and the snapshot stream.

It speaks through the generated stubs of python3-etcd3 (import name `etcd3`) on a channel
we build ourselves, so that TLS material, the proxy setting and every deadline are ours.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import grpc
from etcd3.etcdrpc import rpc_pb2 as rpc
from etcd3.etcdrpc import rpc_pb2_grpc as rpc_grpc

from toolbox import interruption, log
from toolbox.context import Context
from toolbox.errors import (
    EtcdUnavailable,
    IntegrityError,
    InvalidInput,
    PreconditionFailed,
    WaitTimedOut,
)
from toolbox.etcd.bbolt import BoltFormatError
from toolbox.etcd.keyspace import varint
from toolbox.host.paths import HostPaths, revision_number

_log = log.get(__name__)
T = TypeVar("T")

CLIENT_CERT_FILES = (
    "configmaps/etcd-serving-ca/ca-bundle.crt",
    "secrets/etcd-client/tls.crt",
    "secrets/etcd-client/tls.key",
)
_MAX_MESSAGE = 64 * 1024 * 1024
# A membership change is a raft proposal; one lost in a leader change is never answered,
# so callers retry (see change_membership) rather than wait long.
MEMBERSHIP_DEADLINE = 10.0
UNHEALTHY_WAIT = 30.0  # how long a change refused as "unhealthy cluster" is retried
# etcd reads each key's whole value from its db even for a keys-only range: a page is at
# most 1000 x 1.5 MiB (etcd's request limit) read, 38 s from a cold disk at 40 MiB/s (the
# slow master disk Timeouts.scaled allows for), within the deadline.
KEYS_PAGE = 1000
KEYS_PAGE_DEADLINE = 60.0
SNAPSHOT_METHOD = "/etcdserverpb.Maintenance/Snapshot"


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path
    source: str  # where they came from, for messages

    def read(self) -> tuple[bytes, bytes, bytes]:
        try:
            return self.ca.read_bytes(), self.key.read_bytes(), self.cert.read_bytes()
        except OSError as exc:
            raise InvalidInput(f"cannot read etcd TLS file {exc.filename}: {exc.strerror}",
                               next_step="check --cacert/--cert/--key") from exc


@dataclass(frozen=True)
class StoredKey:
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True)
class Member:
    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]

    @property
    def hex_id(self) -> str:
        return f"{self.id:x}"

    def as_json(self) -> dict[str, Any]:
        """The member as reports and manifests show it: its id in hex, as etcdctl does."""
        return {"name": self.name, "id": self.hex_id, "peer_urls": list(self.peer_urls)}


@dataclass(frozen=True)
class Status:
    endpoint: str
    version: str
    db_size: int
    leader: int
    raft_index: int
    raft_term: int
    member_id: int
    cluster_id: int
    revision: int


def client_tls_from_revisions(paths: HostPaths) -> TlsFiles:
    """The etcd client cert of the newest kube-apiserver-pod-N that has one (4.3's
    `backup_etcd_client_certs`: newest by mtime, highest revision on a tie)."""
    revisions = paths.kube_apiserver_revisions()
    if not revisions:
        raise PreconditionFailed(
            f"no kube-apiserver-pod-N directory in {paths.shown(paths.static_pod_resources)}, "
            "so there is no etcd client certificate to use",
            next_step="pass --cacert/--cert/--key (or ETCDCTL_CACERT/CERT/KEY), or check "
            "--host-root points at the master's /",
        )
    newest_first = sorted(revisions, key=lambda d: (d.stat().st_mtime, revision_number(d)),
                          reverse=True)
    for directory in newest_first:
        files = [directory / rel for rel in CLIENT_CERT_FILES]
        if all(f.is_file() for f in files):
            return TlsFiles(files[0], files[1], files[2], source=paths.shown(directory))
    raise PreconditionFailed(
        "no kube-apiserver-pod-N directory holds the etcd client certificate "
        f"({', '.join(CLIENT_CERT_FILES)})",
        next_step="pass --cacert/--cert/--key (or ETCDCTL_CACERT/CERT/KEY)",
    )


def resolve_tls(ctx: Context) -> TlsFiles:
    given = (ctx.etcd.cacert, ctx.etcd.cert, ctx.etcd.key)
    if not any(given):
        return client_tls_from_revisions(ctx.paths)
    if not all(given):
        raise InvalidInput(
            "give all three of --cacert, --cert and --key (or none, to use the "
            "kube-apiserver's etcd client certificate)",
            next_step="add the missing flag(s) or ETCDCTL_* variable(s)",
        )
    ca, cert, key = (ctx.paths.host(p) for p in given if p)
    for f in (ca, cert, key):
        if not f.is_file():
            raise InvalidInput(f"etcd TLS file {ctx.paths.shown(f)} does not exist",
                               next_step="check --cacert/--cert/--key; paths are host paths")
    return TlsFiles(ca, cert, key, source="flags")


class EtcdClient:
    """One connection to the first healthy endpoint."""

    def __init__(self, channel: grpc.Channel, endpoint: str, timeouts_dial: float,
                 stream_idle: float):
        self.channel = channel
        self.endpoint = endpoint
        self.dial = timeouts_dial
        self.stream_idle = stream_idle
        self.cluster = rpc_grpc.ClusterStub(channel)
        self.maintenance = rpc_grpc.MaintenanceStub(channel)
        self.kv = rpc_grpc.KVStub(channel)

    @classmethod
    def connect(cls, ctx: Context, tls: TlsFiles | None = None,
                endpoints: tuple[str, ...] | None = None) -> EtcdClient:
        """The first healthy endpoint of the context (or of `endpoints`)."""
        return cls.connect_any(endpoints or ctx.etcd.endpoints, tls or resolve_tls(ctx),
                               dial=ctx.timeouts.dial, stream_idle=ctx.timeouts.stream_idle)

    @classmethod
    def connect_any(cls, endpoints: tuple[str, ...], tls: TlsFiles, *, dial: float,
                    stream_idle: float) -> EtcdClient:
        ca, key, cert = tls.read()
        failures = []
        for endpoint in endpoints:
            channel = _channel(endpoint, ca, key, cert)
            client = cls(channel, endpoint, dial, stream_idle)
            try:
                status = client.status()
            except EtcdUnavailable as exc:
                failures.append(exc.what)
                channel.close()
                continue
            _log.debug("etcd.connected", endpoint=endpoint, version=status.version,
                       tls_source=tls.source)
            return client
        raise EtcdUnavailable(
            "no etcd endpoint answered: " + "; ".join(failures),
            next_step="check that etcd runs on this master (`crictl ps --name etcd-member`) "
            "or pass --endpoints of a healthy member",
        )

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> EtcdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def status(self) -> Status:
        reply = self._unary(self.maintenance.Status, rpc.StatusRequest(), "status")
        return Status(
            endpoint=self.endpoint, version=reply.version, db_size=reply.dbSize,
            leader=reply.leader, raft_index=reply.raftIndex, raft_term=reply.raftTerm,
            member_id=reply.header.member_id, cluster_id=reply.header.cluster_id,
            revision=reply.header.revision,
        )

    def members(self) -> list[Member]:
        reply = self._unary(self.cluster.MemberList, rpc.MemberListRequest(), "member list")
        return [Member(m.ID, m.name, tuple(m.peerURLs), tuple(m.clientURLs))
                for m in reply.members]

    def add_member(self, peer_urls: tuple[str, ...]) -> tuple[Member, list[Member]]:
        reply = self._unary(self.cluster.MemberAdd, rpc.MemberAddRequest(peerURLs=peer_urls),
                            "member add", deadline=MEMBERSHIP_DEADLINE)
        added = Member(reply.member.ID, reply.member.name, tuple(reply.member.peerURLs),
                       tuple(reply.member.clientURLs))
        return added, [Member(m.ID, m.name, tuple(m.peerURLs), tuple(m.clientURLs))
                       for m in reply.members]

    def remove_member(self, member_id: int) -> list[Member]:
        reply = self._unary(self.cluster.MemberRemove, rpc.MemberRemoveRequest(ID=member_id),
                            "member remove", deadline=MEMBERSHIP_DEADLINE)
        return [Member(m.ID, m.name, tuple(m.peerURLs), tuple(m.clientURLs))
                for m in reply.members]

    def change_membership(self, attempt: Callable[[], T], done: Callable[[], bool],
                          what: str, tries: int = 4) -> T | None:
        """Run a membership change, retrying when it was lost in a leader change (before
        each retry `done()` says whether the previous attempt took effect after all), and
        while etcd refuses it as "unhealthy cluster": its leader takes one only once it has
        been connected to every voting member for 5 s, e.g. just after a member restarted
        or was removed. That lasts seconds: 30 s is the bound."""
        unhealthy_until = time.monotonic() + UNHEALTHY_WAIT
        lost = 0
        while True:
            try:
                return attempt()
            except EtcdUnavailable as exc:
                if "unhealthy cluster" in exc.what:
                    if time.monotonic() > unhealthy_until:
                        raise WaitTimedOut(
                            f"waited {UNHEALTHY_WAIT:.0f}s for etcd to accept the {what} (it "
                            "answered: unhealthy cluster)",
                            next_step="check every member's health with `etcdctl endpoint "
                            "health --cluster`") from exc
                    time.sleep(0.5)
                    continue
                lost += 1
                if lost == tries or not _maybe_applied(exc):
                    raise
                _log.warning("etcd.retry", what=what, attempt=lost, reason=exc.what)
                time.sleep(1)
                if done():
                    return None

    # ---- keys: what a selective restore reads and writes ----------------------------------
    def keys(self, prefix: bytes, page: int = KEYS_PAGE) -> Iterator[tuple[bytes, int]]:
        """(key, mod revision) of every key under `prefix`: keys only, no value is sent, in
        pages read at the revision of the first, so the listing is one consistent moment.
        An empty prefix: every key."""
        start, end, revision = prefix or b"\0", _prefix_end(prefix), 0
        while True:
            reply = self._unary(self.kv.Range, rpc.RangeRequest(
                key=start, range_end=end, limit=page, keys_only=True, revision=revision),
                f"range of {prefix.decode(errors='replace')}", KEYS_PAGE_DEADLINE)
            revision = revision or reply.header.revision
            for kv in reply.kvs:
                yield kv.key, kv.mod_revision
            if not reply.more or not reply.kvs:
                return
            start = reply.kvs[-1].key + b"\0"

    def get(self, key: bytes) -> StoredKey | None:
        reply = self._unary(self.kv.Range, rpc.RangeRequest(key=key),
                            f"read of {key.decode(errors='replace')}")
        if not reply.kvs:
            return None
        kv = reply.kvs[0]
        return StoredKey(kv.value, kv.create_revision, kv.mod_revision)

    def create(self, key: bytes, value: bytes) -> int | None:
        """Put `key` only if it does not exist; the revision written, None when it exists."""
        return self._put_if(key, value, rpc.Compare(
            key=key, result=rpc.Compare.EQUAL, target=rpc.Compare.CREATE, create_revision=0))

    def replace(self, key: bytes, value: bytes, mod_revision: int) -> int | None:
        """Put `key` only if it is still at `mod_revision`; the revision written, or None."""
        return self._put_if(key, value, rpc.Compare(
            key=key, result=rpc.Compare.EQUAL, target=rpc.Compare.MOD,
            mod_revision=mod_revision))

    def delete_if(self, key: bytes, value: bytes, created_after: int) -> bool:
        """Delete `key` only if it holds exactly `value` and was created after the revision
        `created_after`: what a rollback may take back and nothing else."""
        reply = self._unary(self.kv.Txn, rpc.TxnRequest(
            compare=[rpc.Compare(key=key, result=rpc.Compare.EQUAL, target=rpc.Compare.VALUE,
                                 value=value),
                     rpc.Compare(key=key, result=rpc.Compare.GREATER,
                                 target=rpc.Compare.CREATE, create_revision=created_after)],
            success=[rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key))]),
            f"delete of {key.decode(errors='replace')}")
        return bool(reply.succeeded)

    def _put_if(self, key: bytes, value: bytes, compare: Any) -> int | None:
        reply = self._unary(self.kv.Txn, rpc.TxnRequest(
            compare=[compare],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value))]),
            f"write of {key.decode(errors='replace')}")
        return int(reply.header.revision) if reply.succeeded else None

    def snapshot_chunks(self) -> Iterator[memoryview]:
        """The snapshot stream, as views of each message's blob. A member that goes silent
        for `stream_idle` seconds (frozen, partitioned) gets the call cancelled, so a backup
        never hangs."""
        # The replies are taken as raw bytes and the blob is sliced out of them: a generated
        # SnapshotResponse would parse each 32 KiB message and copy its blob once more (about
        # 1 s of CPU per GiB, on a machine where etcd needs the other core).
        call = self.channel.unary_stream(
            SNAPSHOT_METHOD, request_serializer=rpc.SnapshotRequest.SerializeToString,
            response_deserializer=None)(rpc.SnapshotRequest())
        # When the wait for etcd's next message began; None while the caller has the last
        # one: a disk that stalls our writes (NFS, a full page cache at 8 GiB) is not etcd
        # going silent, and gRPC's flow control holds etcd back meanwhile.
        waiting_since: list[float | None] = [time.monotonic()]
        finished = threading.Event()
        stalled = threading.Event()

        def watchdog() -> None:
            while not finished.wait(min(1.0, self.stream_idle / 4)):
                since = waiting_since[0]
                if since is not None and time.monotonic() - since > self.stream_idle:
                    stalled.set()
                    call.cancel()
                    return

        guard = threading.Thread(target=watchdog, name="snapshot-watchdog", daemon=True)
        guard.start()
        mark = interruption.received()
        try:
            for reply in call:
                interruption.raise_lost(mark)
                waiting_since[0] = None
                yield snapshot_blob(reply)
                waiting_since[0] = time.monotonic()
        except grpc.RpcError as exc:
            interruption.raise_lost(mark)
            if stalled.is_set():
                raise WaitTimedOut(
                    f"etcd at {self.endpoint} sent no snapshot data for "
                    f"{self.stream_idle:.0f}s (member frozen or unreachable); the stream "
                    "was cancelled",
                    state="unchanged: the partial snapshot was removed",
                    next_step="check the member's health, or pass --endpoints of another "
                    "member, then run the backup again",
                ) from exc
            raise _unavailable(self.endpoint, "snapshot", exc) from exc
        finally:
            finished.set()
            call.cancel()

    def _unary(self, method, request, what: str,  # type: ignore[no-untyped-def]
               deadline: float | None = None):
        mark = interruption.received()
        try:
            reply = method(request, timeout=max(self.dial, deadline or 0))
        except grpc.RpcError as exc:
            interruption.raise_lost(mark)  # a Ctrl-C gRPC dropped comes first
            raise _unavailable(self.endpoint, what, exc) from exc
        interruption.raise_lost(mark)
        return reply


def snapshot_blob(message: bytes) -> memoryview:
    """The blob (field 3) of one serialized SnapshotResponse, without a copy. The other
    fields (header, remaining_bytes, and 3.5's version) are skipped by their wire type."""
    at, end = 0, len(message)
    try:
        while at < end:
            tag, at = varint(message, at)
            wire = tag & 7
            if wire == 0:
                _, at = varint(message, at)
            elif wire == 2:
                length, at = varint(message, at)
                if at + length > end:
                    raise _not_a_snapshot_message(f"field {tag >> 3} runs past its end")
                if tag >> 3 == 3:
                    return memoryview(message)[at:at + length]
                at += length
            elif wire in (1, 5):
                at += 8 if wire == 1 else 4
            else:
                raise _not_a_snapshot_message(f"wire type {wire} at byte {at}")
    except BoltFormatError as exc:
        raise _not_a_snapshot_message(f"a varint before byte {end} is cut off") from exc
    return memoryview(b"")  # a message may carry no blob


def _not_a_snapshot_message(what: str) -> IntegrityError:
    return IntegrityError(f"etcd sent a snapshot message that is not a SnapshotResponse: {what}",
                          state="unchanged: the partial snapshot was removed",
                          next_step="run the backup again; if it repeats, try another member "
                          "with --endpoints")


def _prefix_end(prefix: bytes) -> bytes:
    """etcd's range end for "every key starting with prefix"."""
    trimmed = prefix.rstrip(b"\xff")
    return trimmed[:-1] + bytes([trimmed[-1] + 1]) if trimmed else b"\0"


def _maybe_applied(exc: EtcdUnavailable) -> bool:
    """Our deadline, or etcd's own "request timed out" after a leader change: in both the
    proposal may or may not have been applied, so check, then retry."""
    return "deadline" in exc.what or "request timed out" in exc.what


def _channel(endpoint: str, ca: bytes, key: bytes, cert: bytes) -> grpc.Channel:
    parts = urlsplit(endpoint)
    target = parts.netloc
    options = [
        ("grpc.enable_http_proxy", 0),
        ("grpc.max_receive_message_length", _MAX_MESSAGE),
        # The snapshot is a unary-stream call: reading it on the calling thread saves a
        # thread hand-off per 32 KiB message (measured: about 10% less CPU per GiB).
        ("grpc.experimental.single_threaded_unary_stream", 1),
    ]
    if parts.scheme == "http":
        return grpc.insecure_channel(target, options=options)
    credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                               certificate_chain=cert)
    return grpc.secure_channel(target, credentials, options=options)


def _unavailable(endpoint: str, what: str, exc: grpc.RpcError) -> EtcdUnavailable:
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    reason = details or str(code)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        reason = "no answer before the deadline"
    elif details and ("handshake" in details.lower() or "certificate" in details.lower()):
        reason = f"TLS refused ({details})"
    return EtcdUnavailable(f"{what} at {endpoint} failed: {reason}")
