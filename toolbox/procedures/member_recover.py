"""Guide 3.2 steps 3-4: a new master with no etcd certificates joins the cluster.

`etcd-member-recover.sh SIGNER_IP NAME`: the server, peer and metric certificates are
requested from our signer (with the one-time token it printed), each checked against the
etcd and metric CAs on this host, and written only once all three are got
(toolbox/pki/agent.py); then everything member add does.
SETUP_ETCD_ENVIRONMENT and KUBE_CLIENT_AGENT are accepted and not needed.
"""

from __future__ import annotations

import time
from typing import Any

from toolbox.context import Context
from toolbox.errors import InvalidInput
from toolbox.journal import Journal, Step, describe, execute
from toolbox.pki import agent
from toolbox.pki.profiles import member_cert_requests
from toolbox.procedures import member_add
from toolbox.procedures.member_add import AddRequest, AddResult

OPERATION = "member-recover"
SIGNER_PORT = 9943
finish = member_add.finish
next_steps = member_add.next_steps


def plan(ctx: Context, signer_ip: str, name: str, peer_url: str | None,
         wait: bool = True) -> dict[str, Any]:
    if not ctx.signer_token:
        raise InvalidInput(
            "no signer token: export OCP_RECOVERY_SIGNER_TOKEN with the token that "
            "`ocp-recovery signer serve` printed on the survivor",
            next_step="export OCP_RECOVERY_SIGNER_TOKEN=<token>, then run this again")
    # The member to reach for `member add` is the signer's master (spec §6).
    the_plan = member_add.plan(ctx, AddRequest(signer_ip, name, peer_url, wait),
                               certificates=False, operation=OPERATION)
    the_plan["signer"] = f"https://{signer_ip}:{SIGNER_PORT}"
    return the_plan


def steps(ctx: Context, journal: Journal) -> list[Step]:
    the_plan = journal.plan
    member_dir = ctx.paths.etcd_member_resources
    domain = the_plan["dns_name"].split(".", 1)[1]

    def request_certificates() -> None:
        etcd_ca = (member_dir / "ca.crt").read_bytes()
        cas = {"etcd": etcd_ca, "metric": (member_dir / "metric-ca.crt").read_bytes()}
        # No token is needed when every answer is kept already (the signer may be gone).
        endpoint = agent.SignerEndpoint(the_plan["signer"], ctx.signer_token or "", etcd_ca,
                                  ctx.timeouts.dial * 6)
        # Not the plan's stash: a run refused at this first step is run again with a new
        # plan, and must use the keys and answers the signer may already have given.
        pending = ctx.paths.state_dir / "member-recover-keys"
        agent.request_certificates(endpoint, member_cert_requests(
            the_plan["dns_name"], the_plan["ip"], domain, ctx.extra_peer_ips), cas,
            member_dir, pending)

    return [Step("request-certificates", f"get server, peer and metric certificates for "
                 f"{the_plan['dns_name']} from {the_plan['signer']} into "
                 f"{ctx.paths.shown(member_dir)}", request_certificates),
            *member_add.steps(ctx, journal)]


def dry_run(ctx: Context, signer_ip: str, name: str, peer_url: str | None,
            wait: bool = True) -> tuple[dict[str, Any], list[str]]:
    the_plan = plan(ctx, signer_ip, name, peer_url, wait)
    return the_plan, describe(steps(ctx, Journal.in_memory(the_plan)))


def run(ctx: Context, the_plan: dict[str, Any]) -> AddResult:
    started = time.monotonic()
    execute(ctx.paths.state_dir, OPERATION, the_plan, lambda j: steps(ctx, j))
    result = finish(ctx, the_plan)
    result.seconds = time.monotonic() - started
    return result
