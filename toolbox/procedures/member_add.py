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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from toolbox import log
from toolbox.context import SCALED_SECONDS_PER_GIB, Context, longer_health_wait
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
from toolbox.host.files import (
    atomic_write,
    copy_file,
    ensure_private_dir,
    human_bytes,
    move_path,
    nearest_existing,
    remove_quietly,
)
from toolbox.host.node import member_name, node_name
from toolbox.host.runtime import Runtime
from toolbox.journal import Confirmation, Journal, Plan, Procedure, Step, StepRun, new_operation_id
from toolbox.pki.certs import load_certificates
from toolbox.procedures.restore import ETCD_POD, SPACE_FLOOR, SPACE_MARGIN
from toolbox.report import Report
from toolbox.waiting import wait_until

_log = log.get(__name__)

MEMBER_CERT_KINDS = ("server", "peer")
# An OpenShift 4.3 control plane is three masters: a cluster of fewer, every member healthy,
# still has masters to add (guide 3.2 adds the lost ones one at a time).
CONTROL_PLANE_MASTERS = 3
# True only until the signer answers: member recover drops it from its final report.
NO_CLIENT_CERTIFICATE_YET = ("no etcd client certificate on this host yet: the cluster is "
                             "checked once the signer's certificates are here")


@dataclass(frozen=True)
class AddRequest:
    active_ip: str
    name: str
    peer_url: str | None = None   # default: https://<ETCD_DNS_NAME>:2380 if it resolves
    wait: bool = True             # wait, as the last step, until the member serves


@dataclass(frozen=True)
class AddPlan(Plan):
    wait: bool
    active: str          # the active member's client URL
    name: str
    peer_url: str
    dns_name: str
    ip: str
    stash: str           # host path: the files set aside


AnyAddPlan = TypeVar("AnyAddPlan", bound=AddPlan)   # member recover's plan runs these steps too


@dataclass(frozen=True)
class AddResult:
    name: str
    healthy: bool | None                  # None: not waited for (--no-wait)
    members: tuple[dict[str, Any], ...]   # Member.as_json() and "healthy", as the wait saw them
    warnings: tuple[str, ...]
    remaining: str                        # the command for each master still to add

    @property
    def whole(self) -> bool:
        """Every member started and healthy, and no master of the control plane missing."""
        return bool(self.healthy) and len(self.members) >= CONTROL_PLANE_MASTERS and \
            all(m["name"] and m["healthy"] for m in self.members)

    def report(self) -> Report:
        if self.healthy is None:
            summary = f"member {self.name} added; not waited for (--no-wait)"
        elif self.whole:
            summary = (f"member {self.name} is started and healthy; the cluster is whole: "
                       f"{len(self.members)} of {len(self.members)} members started and "
                       "healthy")
        else:
            summary = f"member {self.name} is started and healthy"
        return Report(
            "member_add.summary", summary,
            {"member": self.name, "healthy": self.healthy, "whole": self.whole,
             "members": list(self.members)},
            details=[f"  member {m['id']} {m['name'] or '(not started)'} "
                     f"{','.join(m['peer_urls'])}{'' if m['healthy'] else ' (not healthy)'}"
                     for m in self.members],
            warnings=list(self.warnings), next=self._next())

    def _next(self) -> list[str]:
        if self.healthy is None:
            return [f"`crictl ps --name etcd-member` here shows when {self.name}'s etcd runs; "
                    f"once it serves, on each remaining master, one at a time: "
                    f"{self.remaining}"]
        unstarted = [m for m in self.members if not m["name"]]
        unhealthy = [m["name"] for m in self.members if m["name"] and not m["healthy"]]
        missing = CONTROL_PLANE_MASTERS - len(self.members)
        lines = []
        if unstarted:
            lines.append(f"{len(unstarted)} member(s) added but not started "
                         f"({', '.join(u for m in unstarted for u in m['peer_urls'])}): finish "
                         "their member add or recover on those masters (`ocp-recovery status` "
                         "there)")
        if unhealthy:
            lines.append(f"{len(unhealthy)} member(s) not healthy ({', '.join(unhealthy)}): "
                         "check `crictl ps --name etcd-member` and its log on those masters")
        if missing > 0:
            lines.append(f"{missing} more master(s) to add (the control plane has "
                         f"{CONTROL_PLANE_MASTERS}, the cluster {len(self.members)}): on "
                         f"each, one at a time: {self.remaining}")
        return lines


class MemberAddProcedure(Procedure[AddRequest, AddPlan, AddResult]):
    operation = "member-add"
    plan_type = AddPlan

    def plan(self, ctx: Context, request: AddRequest) -> AddPlan:
        return check(ctx, request, certificates=True, operation=self.operation)

    def steps(self, ctx: Context, plan: AddPlan) -> list[Step[AddPlan]]:
        return add_steps(ctx, plan)

    def finish(self, ctx: Context, plan: AddPlan, journal: Journal) -> AddResult:
        return result_of(plan, journal, plan.warnings, "ocp-recovery member add")

    def confirmation(self, plan: AddPlan) -> Confirmation:
        return Confirmation(f"add {plan.name} ({plan.peer_url}) through {plan.active}",
                            "Stop etcd on this master and add it to the cluster?")


PROCEDURE = MemberAddProcedure()
OPERATION = PROCEDURE.operation


def check(ctx: Context, request: AddRequest, *, certificates: bool,
          operation: str) -> AddPlan:
    """Every check before the first change. `certificates`: this master must already have
    valid member certificates (member add); member recover gets them from the signer first."""
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
    operation_id = new_operation_id(operation)

    def plan_with(*warnings: str) -> AddPlan:
        return AddPlan(id=operation_id, warnings=warnings, wait=request.wait, active=active,
                       name=request.name, peer_url=peer_url, dns_name=dns_name, ip=ip,
                       stash=paths.shown(paths.state_dir / operation_id))

    try:
        tls = member_tls(ctx, dns_name)
    except PreconditionFailed:
        if certificates:
            raise
        # A blank master: no client certificate until the signer's arrive; the cluster is
        # checked then, in the member-add step.
        return plan_with(NO_CLIENT_CERTIFICATE_YET)
    with EtcdClient.connect(ctx, tls, endpoints=(active,)) as client:
        members = client.members()
        db_size = client.status().db_size
    # The leader sends the new member the whole db; a disk that fills while it is written
    # leaves a member that counts toward quorum and never starts.
    paths.require_free_space(
        nearest_existing(paths.etcd_data_dir), int(db_size * SPACE_MARGIN) + SPACE_FLOOR,
        f"the copy of the cluster's {human_bytes(db_size)} db this member receives")
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
        return plan_with(
            f"the cluster has {len(healthy)} healthy member(s); with this one added its "
            f"quorum is {quorum(len(members) + 1)}: it stops serving until this member runs")
    return plan_with()


def add_steps(ctx: Context, plan: AnyAddPlan) -> list[Step[AnyAddPlan]]:
    """The steps of member add, which member recover runs after getting its certificates."""
    paths = ctx.paths
    shown = paths.shown
    return [
        Step("save-member-files", f"copy etcd-member.yaml, {shown(paths.etcd_env_file)} "
             f"and etcd.conf to {plan.stash}", _save_member_files),
        Step("stop-etcd", f"move etcd-member.yaml to {plan.stash}/manifests; wait "
             "until the pod is gone", _stop_etcd, _start_etcd),
        Step("set-aside-data-dir", f"move {shown(paths.etcd_data_dir)} to "
             f"{plan.stash}/var-lib-etcd", _set_aside_data_dir, _put_back_data_dir),
        Step("member-add", f"etcd member add {plan.name} {plan.peer_url} through "
             f"{plan.active}", _add_member, _remove_added_member),
        Step("write-environment", f"ETCD_INITIAL_CLUSTER and ETCD_INITIAL_CLUSTER_STATE="
             f"existing into {shown(paths.etcd_env_file)}", _write_environment,
             _put_back_environment),
        Step("start-etcd", "move etcd-member.yaml back into the manifests", _start_etcd,
             _stop_etcd),
        *([Step("wait-healthy", f"wait (<= {ctx.timeouts.health:.0f}s, plus "
                f"{SCALED_SECONDS_PER_GIB:.0f}s per GiB of the db) until member "
                f"{plan.name} starts and serves", _wait_healthy)] if plan.wait else []),
    ]


def result_of(plan: AddPlan, journal: Journal, warnings: tuple[str, ...],
              command: str) -> AddResult:
    """The result of a finished run, from what its wait step saw (no second check);
    `command` is how the remaining masters join, through the same active member."""
    active = urlsplit(plan.active).hostname or plan.active
    return AddResult(plan.name, True if plan.wait else None,
                     tuple(journal.fact("members", [])), warnings,
                     f"{command} {active} etcd-member-<node>")


def _stash(run: StepRun[AnyAddPlan]) -> Path:
    return run.ctx.paths.host(run.plan.stash)


def _save_member_files(run: StepRun[AnyAddPlan]) -> None:
    paths, stash = run.ctx.paths, _stash(run)
    ensure_private_dir(stash)
    for source, name in ((paths.etcd_env_file, "environment"),
                         (paths.etcd_manifest, "etcd-member.yaml"),
                         (paths.etcd_conf, "etcd.conf")):
        if source.is_file() and not (stash / name).exists():
            copy_file(source, stash / name)


def _stop_etcd(run: StepRun[AnyAddPlan]) -> None:
    paths = run.ctx.paths
    if paths.etcd_manifest.exists():
        move_path(paths.etcd_manifest, _stash(run) / "manifests" / "etcd-member.yaml")
    Runtime(run.ctx.executor).wait_pod_stopped(ETCD_POD, run.ctx.timeouts.pod_stop)


def _start_etcd(run: StepRun[AnyAddPlan]) -> None:
    move_path(_stash(run) / "manifests" / "etcd-member.yaml", run.ctx.paths.etcd_manifest)


def _set_aside_data_dir(run: StepRun[AnyAddPlan]) -> None:
    data_dir, set_aside = run.ctx.paths.etcd_data_dir, _stash(run) / "var-lib-etcd"
    if set_aside.exists():
        remove_quietly(data_dir)
    elif data_dir.exists():
        move_path(data_dir, set_aside)


def _put_back_data_dir(run: StepRun[AnyAddPlan]) -> None:
    data_dir, set_aside = run.ctx.paths.etcd_data_dir, _stash(run) / "var-lib-etcd"
    if set_aside.exists():
        remove_quietly(data_dir)
        move_path(set_aside, data_dir)


def _add_member(run: StepRun[AnyAddPlan]) -> None:
    plan = run.plan
    tls = member_tls(run.ctx, plan.dns_name)
    with EtcdClient.connect(run.ctx, tls, endpoints=(plan.active,)) as client:
        if _running_local_member(run.ctx, tls, client.members()) is not None:
            raise PreconditionFailed("etcd already runs here as a member of that cluster")
        existing = [m for m in client.members() if plan.peer_url in m.peer_urls]
        if existing:  # a kill after the call: the member is already added
            added, members = existing[0], client.members()
        else:
            added, members = _add(client, plan.peer_url)
    cluster = ",".join(
        f"{m.name or plan.name if m.id == added.id else m.name}={url}"
        for m in members for url in m.peer_urls if m.name or m.id == added.id)
    run.journal.record("member_id", added.id)
    run.journal.record("initial_cluster", cluster)


def _remove_added_member(run: StepRun[AnyAddPlan]) -> None:
    member_id = run.journal.fact("member_id")
    if member_id is None:
        return
    tls = member_tls(run.ctx, run.plan.dns_name)
    with EtcdClient.connect(run.ctx, tls, endpoints=(run.plan.active,)) as client:
        if any(m.id == member_id for m in client.members()):
            client.remove_member(member_id)


def _write_environment(run: StepRun[AnyAddPlan]) -> None:
    env = parse_env_file((_stash(run) / "environment").read_text())
    for key in ("ETCD_INITIAL_CLUSTER", "ETCD_INITIAL_CLUSTER_STATE"):
        env.plain.pop(key, None)
    env.exported["ETCD_INITIAL_CLUSTER"] = run.journal.fact("initial_cluster")
    env.exported["ETCD_INITIAL_CLUSTER_STATE"] = "existing"
    atomic_write(run.ctx.paths.etcd_env_file, env.render().encode(), mode=0o644)


def _put_back_environment(run: StepRun[AnyAddPlan]) -> None:
    saved = _stash(run) / "environment"
    if saved.exists():
        atomic_write(run.ctx.paths.etcd_env_file, saved.read_bytes(), mode=0o644)


def _wait_healthy(run: StepRun[AnyAddPlan]) -> None:
    """Wait until the added member has started and answers; record the member list and
    which members answer, for the result."""
    ctx, plan = run.ctx, run.plan
    tls = member_tls(ctx, plan.dns_name)
    members: list[Member] = []
    state = [f"member {plan.name} added; waiting for its etcd to start"]

    def started_and_healthy() -> bool:
        try:
            with EtcdClient.connect(ctx, tls, endpoints=(plan.active,)) as client:
                members[:] = client.members()
        except EtcdUnavailable:
            state[0] = f"member {plan.name} added; the active member {plan.active} does " \
                "not answer"
            return False
        mine = [m for m in members if m.name == plan.name]
        if not mine:
            state[0] = f"member {plan.name} added; waiting for its etcd to start"
            return False
        state[0] = f"member {plan.name} started, waiting until it serves"
        return bool(healthy_members(ctx, tls, mine))

    try:
        wait_until(started_and_healthy, timeout=ctx.timeouts.scaled(
                       ctx.timeouts.health, _db_size(ctx, tls, plan.active)),
                   what=f"member {plan.name} to start and serve",
                   next_step="check `crictl ps --name etcd-member` and its log here; "
                   + longer_health_wait("resume"),
                   progress=lambda: state[0])
    except WaitTimedOut as exc:
        exc.state = (f"member {plan.name} is added but not serving: the cluster counts it "
                     "toward quorum, so one of two members has none while the leader sends "
                     "it the db; `rollback` removes it only while the cluster has quorum")
        raise
    # Ours was just seen serving; the others are asked once, for the report's next steps.
    others = [m for m in members if m.name != plan.name]
    answering = {m.id for m in healthy_members(ctx, tls, others)} | \
        {m.id for m in members if m.name == plan.name}
    run.journal.record("members", [{**m.as_json(), "healthy": m.id in answering}
                                   for m in members])


def _db_size(ctx: Context, tls: TlsFiles, active: str) -> int:
    """The size of the db the new member receives and loads before it serves; 0 when the
    active member does not answer now (the wait then starts from the fixed timeout)."""
    try:
        with EtcdClient.connect(ctx, tls, endpoints=(active,)) as client:
            return client.status().db_size
    except EtcdUnavailable:
        return 0


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


def _running_local_member(ctx: Context, tls: TlsFiles, members: list[Member]) -> Member | None:
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
