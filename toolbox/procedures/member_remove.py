"""Guide chapter 2: remove a failed master's etcd member, from a healthy master.

`etcd-member-remove.sh NAME`, made safe: the member is found by its exact name (4.3 used
the name as a regex), the local member and a removal that would leave the cluster without
quorum are refused unless forced, and the new member list is shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from toolbox import log
from toolbox.context import Context
from toolbox.errors import InvalidInput, PreconditionFailed
from toolbox.etcd.client import EtcdClient, Member, resolve_tls
from toolbox.etcd.health import healthy_members, quorum
from toolbox.host.lock import host_lock

_log = log.get(__name__)


@dataclass
class RemoveResult:
    removed: Member
    members: list[Member]
    healthy_before: list[str]


def run(ctx: Context, name: str, *, force: bool = False) -> RemoveResult:
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
                f"{', '.join(m.name or '(unstarted ' + m.hex_id + ')' for m in members)}",
                next_step="give one of the names above exactly (etcd-member-<node name>)")
        target = matches[0]
        healthy = healthy_members(ctx, tls, members)
        remaining = [m for m in healthy if m.id != target.id]
        if target.id == local_id and not force:
            raise PreconditionFailed(
                f"{name} is the member this command talks to (this master's own)",
                next_step="run it on another, healthy master (or pass --force)")
        if len(remaining) < quorum(len(members) - 1) and not force:
            raise PreconditionFailed(
                f"removing {name} leaves {len(remaining)} healthy of {len(members) - 1} "
                f"members, below quorum ({quorum(len(members) - 1)}): the cluster would "
                "stop serving",
                next_step="bring the other members back first (or pass --force if you "
                "know they are gone for good and will be re-added)")
        with host_lock(ctx.paths.state_dir, "member remove"):
            client.change_membership(
                lambda: client.remove_member(target.id),
                lambda: all(m.id != target.id for m in client.members()), "member remove")
            after = client.members()
        _log.info("member.removed", name=name, id=target.hex_id)
    return RemoveResult(target, after, [m.name for m in healthy])
