"""Is the cluster up? Quorum arithmetic, which members answer, and the cluster the local
etcd serves: what the guards of member remove, member add and restore decide on."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from toolbox.context import Context
from toolbox.errors import EtcdUnavailable, PreconditionFailed

if TYPE_CHECKING:
    from toolbox.etcd.client import Member, TlsFiles


def quorum(size: int) -> int:
    return size // 2 + 1


def healthy_members(ctx: Context, tls: TlsFiles, members: list[Member]) -> list[Member]:
    """Members that answer on one of their client URLs, each asked directly."""
    from toolbox.etcd.client import EtcdClient

    healthy = []
    for member in members:
        if not member.client_urls:
            continue
        try:
            with EtcdClient.connect_any(member.client_urls, tls, dial=ctx.timeouts.dial,
                                        stream_idle=ctx.timeouts.stream_idle):
                healthy.append(member)
        except EtcdUnavailable:
            continue
    return healthy


@dataclass(frozen=True)
class LiveCluster:
    local_name: str
    leader_name: str
    members: int
    healthy: int


def live_cluster(ctx: Context) -> LiveCluster | None:
    """The cluster the local etcd serves when it is a started member that has a leader and
    the cluster has quorum; None when etcd is down, has no leader, or cannot be asked."""
    if not any(listening(url, ctx.timeouts.dial) for url in ctx.etcd.endpoints):
        return None  # the usual case of a restore: no etcd runs here
    # gRPC (0.15 s to import) only once something listens.
    from toolbox.etcd.client import EtcdClient, resolve_tls

    try:
        tls = resolve_tls(ctx)
    except PreconditionFailed:
        return None
    try:
        with EtcdClient.connect(ctx, tls) as client:
            status = client.status()
            members = client.members() if status.leader else []
    except EtcdUnavailable:
        return None
    if not members:
        return None
    healthy = healthy_members(ctx, tls, members)
    if len(healthy) < quorum(len(members)):
        return None

    def name_of(member_id: int) -> str:
        return next((m.name for m in members if m.id == member_id and m.name),
                    f"{member_id:x}")

    return LiveCluster(name_of(status.member_id), name_of(status.leader), len(members),
                       len(healthy))


def listening(url: str, timeout: float) -> bool:
    """A TCP connect: something listens at the URL's host and port. Cheap, so a restore
    where nothing listens does not load gRPC (0.15 s), and a wait can probe every peer."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 2379), timeout):
            return True
    except OSError:
        return False
