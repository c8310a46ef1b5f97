"""Guide chapter 2: add this master back as an etcd member (it has valid certificates).

`etcd-member-add.sh ACTIVE_IP NAME`, made safe: refuses while a working member runs here;
the manifest, env file and data dir are set aside, not deleted; `member add` goes through
the active member; ETCD_INITIAL_CLUSTER and ETCD_INITIAL_CLUSTER_STATE=existing are written
to /run/etcd/environment, where the 4.3 pod's init step carries them over; then it waits
for the new member to start. A rollback removes the member again: a cluster that waits on a
member that never starts may have lost quorum.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from toolbox import log
from toolbox.context import Context
from toolbox.errors import EtcdUnavailable, InvalidInput, PreconditionFailed, WaitTimedOut
from toolbox.etcd.client import EtcdClient, Member, TlsFiles, resolve_tls
from toolbox.etcd.cluster import (
    CLIENT_PORT,
    PEER_PORT,
    check_peer_url,
    check_reaches_here,
    parse_env_file,
    resolve_host,
)
from toolbox.etcd.health import healthy_members, quorum
from toolbox.host import network
from toolbox.host.files import atomic_write, ensure_private_dir, move_path
from toolbox.host.node import member_name, node_name
from toolbox.host.runtime import Runtime, wait_until
from toolbox.journal import Journal, Step, describe, execute, new_operation_id
from toolbox.pki.certs import load_certificates
from toolbox.procedures.restore import ETCD_POD

_log = log.get(__name__)

OPERATION = "member-add"
MEMBER_CERT_KINDS = ("server", "peer")


@dataclass(frozen=True)
class AddRequest:
    active_ip: str
    name: str
    peer_url: str | None = None   # default: https://<ETCD_DNS_NAME>:2380 if it resolves
    wait: bool = True             # wait, as the last step, until the member serves


@dataclass
class AddResult:
    plan: dict[str, Any]
    members: list[Member] = field(default_factory=list)
    healthy: bool | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def plan(ctx: Context, request: AddRequest, *, certificates: bool = True,
         operation: str = OPERATION) -> dict[str, Any]:
    """`certificates`: this master must already have valid member certificates (member
    add); member recover gets them from the signer first."""
    paths = ctx.paths
    if not request.name:
        raise InvalidInput("a member name is required (etcd-member-<node name>)")
    node = node_name(paths)
    if node is not None and request.name != member_name(node):
        # etcd names itself after the pod, etcd-member-<node>: another name is a member
        # that never starts, in a cluster that counts it toward quorum.
        raise InvalidInput(f"{request.name!r} is not this host's member name: node {node}'s "
                           f"etcd member is {member_name(node)!r}",
                           next_step=f"use {member_name(node)}")
    env_path = paths.etcd_env_file
    if not env_path.is_file():
        raise PreconditionFailed(f"{paths.shown(env_path)} is missing: the etcd-member pod "
                                 "writes it when it starts",
                                 next_step="start kubelet so the etcd-member pod runs its "
                                 "init step, then run this again")
    env = parse_env_file(env_path.read_text())
    dns_name, ip = env.get("ETCD_DNS_NAME"), env.get("ETCD_IPV4_ADDRESS")
    if not dns_name or not ip:
        raise PreconditionFailed(f"{paths.shown(env_path)} has no ETCD_DNS_NAME / "
                                 "ETCD_IPV4_ADDRESS")
    if certificates:
        _check_member_certs(ctx, dns_name)
    if not paths.etcd_manifest.is_file():
        raise PreconditionFailed(f"{paths.shown(paths.etcd_manifest)} is missing",
                                 next_step="restore the MCO-provided etcd-member.yaml first")
    timeout = ctx.timeouts.dial
    peer_url = _given_peer_url(request.peer_url, ip, timeout) if request.peer_url else \
        _default_peer_url(dns_name, ip, timeout)
    active = _active_endpoint(request.active_ip, timeout)
    warnings: list[str] = []
    operation_id = new_operation_id(operation)
    the_plan = {"id": operation_id, "wait": request.wait, "active": active,
                "name": request.name, "peer_url": peer_url, "dns_name": dns_name, "ip": ip,
                "stash": paths.shown(paths.state_dir / operation_id), "warnings": warnings}
    try:
        tls = member_tls(ctx, dns_name)
    except PreconditionFailed:
        if certificates:
            raise
        # A blank master: no client certificate until the signer's arrive; the cluster is
        # checked then, in the member-add step.
        warnings.append("no etcd client certificate on this host yet: the cluster is "
                        "checked once the signer's certificates are here")
        return the_plan
    with EtcdClient.connect(ctx, tls, endpoints=(active,)) as client:
        members = client.members()
    local_member = _running_local_member(ctx, tls, members)
    if local_member is not None:
        raise PreconditionFailed(
            f"etcd already runs here as member {local_member.name} of that cluster",
            next_step="nothing to add; to replace it, `ocp-recovery member remove "
            f"{local_member.name}` on another master first")
    if any(m.name == request.name for m in members):
        raise PreconditionFailed(
            f"a member named {request.name} is already in the cluster",
            next_step=f"on a healthy master: ocp-recovery member remove {request.name}")
    taken = next((m for m in members if m.name and _same_peer(peer_url, m.peer_urls, timeout)),
                 None)
    if taken is not None:
        raise PreconditionFailed(f"{peer_url} is the peer address of the started member "
                                 f"{taken.name} ({', '.join(taken.peer_urls)})")
    healthy = healthy_members(ctx, tls, members)
    if len(healthy) < quorum(len(members)):
        # etcd refuses a member add without quorum ("unhealthy cluster"): stopping etcd
        # here first would only add a down member to a cluster that is down.
        raise PreconditionFailed(
            f"the cluster has no quorum: {len(healthy)} of {len(members)} members answer, "
            f"{quorum(len(members))} are needed, so etcd cannot add a member",
            next_step="start the stopped masters' etcd until a majority answers; if they are "
            "lost for good, restore a survivor first (guide 3.2 step 1), then add the others")
    if len(healthy) < quorum(len(members) + 1):
        warnings.append(
            f"the cluster has {len(healthy)} healthy member(s); with this one added its "
            f"quorum is {quorum(len(members) + 1)}: it stops serving until this member runs")
    return the_plan


def member_tls(ctx: Context, dns_name: str) -> TlsFiles:
    """The kube-apiserver's etcd client certificate, as 4.3 used; on a new master that has
    none yet, this member's own server certificate (signed by the etcd CA for client and
    server auth, so etcd accepts it as a client)."""
    try:
        return resolve_tls(ctx)
    except PreconditionFailed:
        member_dir = ctx.paths.etcd_member_resources
        stem = f"system:etcd-server:{dns_name}"
        files = TlsFiles(member_dir / "ca.crt", member_dir / f"{stem}.crt",
                         member_dir / f"{stem}.key", source="this member's server certificate")
        if all(f.is_file() for f in (files.ca, files.cert, files.key)):
            return files
        raise


def _check_member_certs(ctx: Context, dns_name: str) -> None:
    member_dir = ctx.paths.etcd_member_resources
    ca_path = member_dir / "ca.crt"
    if not ca_path.is_file():
        raise PreconditionFailed(f"{ctx.paths.shown(ca_path)} is missing")
    cas = load_certificates(ca_path.read_bytes())
    now = dt.datetime.now(dt.UTC)
    for kind in MEMBER_CERT_KINDS:
        stem = member_dir / f"system:etcd-{kind}:{dns_name}"
        crt, key = stem.with_name(stem.name + ".crt"), stem.with_name(stem.name + ".key")
        if not crt.is_file() or not key.is_file():
            raise PreconditionFailed(
                f"{ctx.paths.shown(crt)} (or its key) is missing: this master has no valid "
                "etcd certificates", next_step="use `ocp-recovery member recover` instead, "
                "which gets new certificates from the signer")
        [cert, *_] = load_certificates(crt.read_bytes())
        if not any(cert.issuer == ca.subject for ca in cas) or cert.not_valid_after_utc < now:
            raise PreconditionFailed(
                f"{ctx.paths.shown(crt)} is expired or not issued by the etcd CA",
                next_step="use `ocp-recovery member recover` to get new certificates")


def _default_peer_url(dns_name: str, ip: str, timeout: float) -> str:
    """4.3 advertised https://<ETCD_DNS_NAME>:2380; where that name does not resolve (the
    sandbox has no DNS), the IP is the only URL peers can reach. A name that resolves to
    another machine is refused."""
    try:
        found = network.resolve(dns_name, timeout)
    except OSError:
        return f"https://{ip}:{PEER_PORT}"
    check_reaches_here(f"ETCD_DNS_NAME {dns_name}", dns_name, found, ip)
    return f"https://{dns_name}:{PEER_PORT}"


def _given_peer_url(url: str, ip: str, timeout: float) -> str:
    """--peer-url: a peer URL whose host resolves, to this host."""
    check_peer_url("--peer-url", url, example=f"https://{ip}:{PEER_PORT}")
    host = urlsplit(url).hostname or ""
    found = resolve_host(f"the host {host} of --peer-url {url}", host, timeout,
                         next_step=f"fix its DNS record, or advertise the IP: --peer-url "
                         f"https://{ip}:{PEER_PORT}")
    check_reaches_here(f"--peer-url {url}", host, found, ip)
    return url.rstrip("/")


def _active_endpoint(active: str, timeout: float) -> str:
    """The client URL of the active member, whose IP (or name) is given."""
    resolve_host(f"the active member's address {active!r}", active, timeout,
                 next_step="give the IP of a healthy member, as `member list` shows it (no "
                 "scheme, no port), e.g. 10.0.0.5")
    bare = active.strip("[]")
    return f"https://{f'[{bare}]' if ':' in bare else bare}:{CLIENT_PORT}"


def _same_peer(peer_url: str, urls: tuple[str, ...], timeout: float) -> bool:
    """Whether `peer_url` reaches the address and port of one of `urls`. A member's URL
    that does not resolve (not ours to judge) is compared as text."""
    def reached(url: str) -> set[tuple[str, int | None]]:
        try:
            parts = urlsplit(url)
            return {(address, parts.port)
                    for address in network.resolve(parts.hostname or url, timeout)}
        except (OSError, ValueError):
            return set()

    ours = reached(peer_url)
    return any(url == peer_url or ours & reached(url) for url in urls)


def _running_local_member(ctx: Context, tls: Any, members: list[Member]) -> Member | None:
    """The cluster member that the etcd running here is, if it is one."""
    try:
        with EtcdClient.connect(ctx, tls) as local:
            local_id = local.status().member_id
    except EtcdUnavailable:
        return None
    return next((m for m in members if m.id == local_id), None)


def _add(client: EtcdClient, peer_url: str) -> tuple[Member, list[Member]]:
    """Add the member (retried by change_membership); its entry and the member list."""

    def lost_but_added() -> bool:
        return any(peer_url in m.peer_urls for m in client.members())

    result = client.change_membership(lambda: client.add_member((peer_url,)),
                                      lost_but_added, "member add")
    if result is None:
        members = client.members()
        result = (next(m for m in members if peer_url in m.peer_urls), members)
    return result


def steps(ctx: Context, journal: Journal) -> list[Step]:
    the_plan = journal.plan
    paths = ctx.paths
    runtime = Runtime(ctx.executor)
    stash = paths.host(the_plan["stash"])
    saved_env = stash / "environment"
    set_aside_data = stash / "var-lib-etcd"

    def save_member_files() -> None:
        ensure_private_dir(stash)
        for source, name in ((paths.etcd_env_file, "environment"),
                             (paths.etcd_manifest, "etcd-member.yaml"),
                             (paths.etcd_conf, "etcd.conf")):
            if source.is_file() and not (stash / name).exists():
                shutil.copy2(source, stash / name)

    def stop_etcd() -> None:
        if paths.etcd_manifest.exists():
            move_path(paths.etcd_manifest, stash / "manifests" / "etcd-member.yaml")
        runtime.wait_pod_stopped(ETCD_POD, ctx.timeouts.pod_stop)

    def start_etcd() -> None:
        move_path(stash / "manifests" / "etcd-member.yaml", paths.etcd_manifest)

    def set_aside_data_dir() -> None:
        if set_aside_data.exists():
            shutil.rmtree(paths.etcd_data_dir, ignore_errors=True)
        elif paths.etcd_data_dir.exists():
            move_path(paths.etcd_data_dir, set_aside_data)

    def put_back_data_dir() -> None:
        if set_aside_data.exists():
            shutil.rmtree(paths.etcd_data_dir, ignore_errors=True)
            move_path(set_aside_data, paths.etcd_data_dir)

    def add_member() -> None:
        tls = member_tls(ctx, the_plan["dns_name"])
        with EtcdClient.connect(ctx, tls, endpoints=(the_plan["active"],)) as client:
            if _running_local_member(ctx, tls, client.members()) is not None:
                raise PreconditionFailed("etcd already runs here as a member of that cluster")
            existing = [m for m in client.members() if the_plan["peer_url"] in m.peer_urls]
            if existing:  # a kill after the call: the member is already added
                added, members = existing[0], client.members()
            else:
                added, members = _add(client, the_plan["peer_url"])
        cluster = ",".join(
            f"{m.name or the_plan['name'] if m.id == added.id else m.name}={url}"
            for m in members for url in m.peer_urls if m.name or m.id == added.id)
        journal.record("member_id", added.id)
        journal.record("initial_cluster", cluster)

    def remove_added_member() -> None:
        member_id = journal.fact("member_id")
        if member_id is None:
            return
        tls = member_tls(ctx, the_plan["dns_name"])
        with EtcdClient.connect(ctx, tls, endpoints=(the_plan["active"],)) as client:
            if any(m.id == member_id for m in client.members()):
                client.remove_member(member_id)

    def write_environment() -> None:
        env = parse_env_file(saved_env.read_text())
        for key in ("ETCD_INITIAL_CLUSTER", "ETCD_INITIAL_CLUSTER_STATE"):
            env.plain.pop(key, None)
        env.exported["ETCD_INITIAL_CLUSTER"] = journal.fact("initial_cluster")
        env.exported["ETCD_INITIAL_CLUSTER_STATE"] = "existing"
        atomic_write(paths.etcd_env_file, env.render().encode(), mode=0o644)

    def put_back_environment() -> None:
        if saved_env.exists():
            atomic_write(paths.etcd_env_file, saved_env.read_bytes(), mode=0o644)

    shown = paths.shown
    return [
        Step("save-member-files", f"copy etcd-member.yaml, {shown(paths.etcd_env_file)} "
             f"and etcd.conf to {the_plan['stash']}", save_member_files),
        Step("stop-etcd", f"move etcd-member.yaml to {the_plan['stash']}/manifests; wait "
             "until the pod is gone", stop_etcd, start_etcd),
        Step("set-aside-data-dir", f"move {shown(paths.etcd_data_dir)} to "
             f"{the_plan['stash']}/var-lib-etcd", set_aside_data_dir, put_back_data_dir),
        Step("member-add", f"etcd member add {the_plan['name']} {the_plan['peer_url']} "
             f"through {the_plan['active']}", add_member, remove_added_member),
        Step("write-environment", f"ETCD_INITIAL_CLUSTER and ETCD_INITIAL_CLUSTER_STATE="
             f"existing into {shown(paths.etcd_env_file)}", write_environment,
             put_back_environment),
        Step("start-etcd", "move etcd-member.yaml back into the manifests", start_etcd,
             stop_etcd),
        *([Step("wait-healthy", f"wait (<= {ctx.timeouts.health:.0f}s) until member "
                f"{the_plan['name']} starts and serves", lambda: wait_started(ctx, the_plan))]
          if the_plan.get("wait", True) else []),
    ]


def dry_run(ctx: Context, request: AddRequest) -> tuple[dict[str, Any], list[str]]:
    the_plan = plan(ctx, request)
    return the_plan, describe(steps(ctx, Journal.in_memory(the_plan)))


def run(ctx: Context, request: AddRequest, *,
        checked_plan: dict[str, Any] | None = None) -> AddResult:
    started = time.monotonic()
    the_plan = checked_plan or plan(ctx, request)
    execute(ctx.paths.state_dir, OPERATION, the_plan, lambda j: steps(ctx, j))
    result = finish(ctx, the_plan)
    result.seconds = time.monotonic() - started
    return result


def finish(ctx: Context, the_plan: dict[str, Any]) -> AddResult:
    """The result of a finished run (its last step waited, unless --no-wait)."""
    result = AddResult(the_plan, warnings=list(the_plan["warnings"]))
    if the_plan.get("wait", True):
        result.members = wait_started(ctx, the_plan)  # started already: one check
        result.healthy = True
    return result


def wait_started(ctx: Context, the_plan: dict[str, Any]) -> list[Member]:
    """Wait until the added member has started and answers; return the member list."""
    tls = member_tls(ctx, the_plan["dns_name"])
    members: list[Member] = []

    def started_and_healthy() -> bool:
        try:
            with EtcdClient.connect(ctx, tls, endpoints=(the_plan["active"],)) as client:
                members[:] = client.members()
        except EtcdUnavailable:
            return False
        mine = [m for m in members if m.name == the_plan["name"]]
        return bool(mine) and bool(healthy_members(ctx, tls, mine))

    try:
        wait_until(started_and_healthy, timeout=ctx.timeouts.health,
                   what=f"member {the_plan['name']} to start and serve",
                   next_step="check `crictl ps --name etcd-member` and its log here")
    except WaitTimedOut as exc:
        exc.state = (f"member {the_plan['name']} is added but has not started: the cluster "
                     "counts it toward quorum and may have stopped serving; `rollback` "
                     "removes the member again")
        raise
    return members


def next_steps(the_plan: dict[str, Any]) -> list[str]:
    return [f"member {the_plan['name']} is started and healthy",
            "next: add the remaining masters the same way, one at a time"]
