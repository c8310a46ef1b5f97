"""Guide chapter 2: remove a failed master's etcd member, from a healthy master.

`etcd-member-remove.sh NAME`, made safe: the member is found by its exact name (4.3 used
the name as a regex), the local member and a removal that would leave the cluster without
quorum are refused unless forced, and the new member list is shown. One membership change,
not journaled: `plan` checks, the commands layer asks with `confirmation`, `execute` removes.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from toolbox import log
from toolbox.context import Context
from toolbox.errors import InvalidInput, PreconditionFailed
from toolbox.etcd.client import EtcdClient, Member, resolve_tls
from toolbox.etcd.health import healthy_members, quorum
from toolbox.host.lock import host_lock
from toolbox.journal import Confirmation
from toolbox.report import Report

_log = log.get(__name__)


@dataclass(frozen=True)
class RemovePlan:
    target: Member
    members: tuple[Member, ...]     # the member list the checks saw
    healthy: tuple[str, ...]        # names of the members that answered
    local: Member | None            # the member this command talks to


@dataclass(frozen=True)
class RemoveResult:
    removed: Member
    members: list[Member]
    healthy_before: list[str]
    active_ip: str | None           # this master's client address, for the new host's add

    def report(self) -> Report:
        name = self.removed.name
        here = self.active_ip or "<this master's IP>"
        return Report(
            "member.removed", f"removed member {name} ({self.removed.hex_id}); members now:",
            {"name": name, "id": self.removed.hex_id,
             "members": [m.as_json() for m in self.members]},
            details=[f"  {m.hex_id} {m.name or '(not started)'} {','.join(m.peer_urls)}"
                     for m in self.members],
            next=[f"on the new host for {name}: ocp-recovery member add {here} {name} (or "
                  f"OCP_RECOVERY_SIGNER_TOKEN=<token> ocp-recovery member recover {here} "
                  f"{name}, if it has no etcd certificates)"])


def plan(ctx: Context, name: str, force: bool = False) -> RemovePlan:
    """Every check: the exact name, not the local member, quorum kept (the last two unless
    `force`)."""
    if not name:
        raise InvalidInput("a member name is required",
                           next_step="ocp-recovery member remove etcd-member-<node>")
    tls = resolve_tls(ctx)
    with EtcdClient.connect(ctx, tls) as client:
        local_id = client.status().member_id
        members = client.members()
    matches = [m for m in members if m.name == name]
    if not matches:
        raise InvalidInput(
            f"no etcd member is named {name!r}; members: "
            f"{', '.join(_shown(m) for m in members)}",
            next_step="give one of the names above exactly (etcd-member-<node name>)")
    target = matches[0]
    healthy = healthy_members(ctx, tls, members)
    remaining = [m for m in healthy if m.id != target.id]
    if target.id == local_id and not force:
        raise PreconditionFailed(
            f"{name} is the member this command talks to (this master's own)",
            next_step="run it on another, healthy master (or pass --force)")
    if len(healthy) < quorum(len(members)):
        # Even forced: a removal is a raft proposal, which a cluster without quorum never
        # commits; etcd would only be retried until the deadline.
        raise PreconditionFailed(
            f"the cluster has no quorum now: {len(healthy)} of {len(members)} members "
            f"answer, {quorum(len(members))} are needed, so etcd cannot commit a member "
            "removal",
            next_step="start the stopped members' etcd; if they are lost for good, restore a "
            "survivor (guide 3.2 step 1: ocp-recovery restore BACKUP --initial-cluster "
            "<this member only>), then add the others")
    if len(remaining) < quorum(len(members) - 1) and not force:
        raise PreconditionFailed(
            f"removing {name} leaves {len(remaining)} healthy of {len(members) - 1} "
            f"members, below quorum ({quorum(len(members) - 1)}): the cluster would "
            "stop serving",
            next_step="bring the other members back first (or pass --force if you "
            "know they are gone for good and will be re-added)")
    return RemovePlan(target, tuple(members), tuple(m.name for m in healthy),
                      next((m for m in members if m.id == local_id), None))


def confirmation(plan: RemovePlan) -> Confirmation:
    target = plan.target
    kept = [m for m in plan.members if m.id != target.id]
    answering = [m for m in kept if m.name in plan.healthy]
    return Confirmation(
        f"remove etcd member {target.name} ({target.hex_id}, {', '.join(target.peer_urls)}); "
        f"the cluster keeps {len(kept)} member(s), {len(answering)} healthy (quorum "
        f"{quorum(len(kept))}): {', '.join(_shown(m) for m in kept)}",
        "Remove this member from the etcd cluster?")


def changes(plan: RemovePlan) -> list[str]:
    """The one change, for --dry-run and the confirmation, as a journaled procedure lists
    its steps."""
    target = plan.target
    return [f" 1. member-remove: etcd member remove {target.name} ({target.hex_id}, "
            f"{', '.join(target.peer_urls)})"]


def execute(ctx: Context, plan: RemovePlan) -> RemoveResult:
    """Remove the planned member, unless the member list changed since the checks (the
    operator may have taken a while to answer)."""
    target = plan.target
    with EtcdClient.connect(ctx, resolve_tls(ctx)) as client, \
            host_lock(ctx.paths.state_dir, "member remove"):
        now = client.members()
        if {m.id for m in now} != {m.id for m in plan.members}:
            raise PreconditionFailed(
                f"the member list changed since {target.name} was checked for removal: "
                f"now {', '.join(_shown(m) for m in now)}",
                state="unchanged: nothing was removed",
                next_step=f"ocp-recovery member remove {target.name} again, to check anew")
        client.change_membership(
            lambda: client.remove_member(target.id),
            lambda: all(m.id != target.id for m in client.members()), "member remove")
        after = client.members()
    _log.info("member.removed", name=target.name, id=target.hex_id)
    local_urls = plan.local.client_urls if plan.local else ()
    return RemoveResult(target, after, list(plan.healthy),
                        urlsplit(local_urls[0]).hostname if local_urls else None)


def run(ctx: Context, name: str, *, force: bool = False) -> RemoveResult:
    """Check and remove, with no confirmation: for drills and tests."""
    return execute(ctx, plan(ctx, name, force))


def _shown(member: Member) -> str:
    return member.name or f"(unstarted {member.hex_id})"
