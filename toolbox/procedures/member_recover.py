"""Guide 3.2 steps 3-4: a new master with no etcd certificates joins the cluster.

`etcd-member-recover.sh SIGNER_IP NAME`: the server, peer and metric certificates are
requested from our signer (with the one-time token it printed), each checked against the
etcd and metric CAs on this host before it is written; then everything member add does.
SETUP_ETCD_ENVIRONMENT and KUBE_CLIENT_AGENT are accepted and not needed.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from toolbox.context import Context
from toolbox.errors import PreconditionFailed
from toolbox.journal import Journal, Step, describe, execute
from toolbox.pki.agent import SignerEndpoint, request_certificate
from toolbox.pki.certs import load_certificates
from toolbox.pki.profiles import member_cert_requests
from toolbox.procedures import member_add
from toolbox.procedures.member_add import AddRequest, AddResult

OPERATION = "member-recover"
SIGNER_PORT = 9943
finish = member_add.finish
next_steps = member_add.next_steps


def plan(ctx: Context, signer_ip: str, name: str, peer_url: str | None) -> dict[str, Any]:
    if not ctx.signer_token:
        raise PreconditionFailed(
            "no signer token: export OCP_RECOVERY_SIGNER_TOKEN with the token that "
            "`ocp-recovery signer serve` printed on the survivor",
            next_step="export OCP_RECOVERY_SIGNER_TOKEN=<token>, then run this again")
    # The member to reach for `member add` is the signer's master (spec §6).
    the_plan = member_add.plan(ctx, AddRequest(signer_ip, name, peer_url), certificates=False)
    the_plan["signer"] = f"https://{signer_ip}:{SIGNER_PORT}"
    the_plan["stash"] = the_plan["stash"].replace(member_add.OPERATION, OPERATION)
    return the_plan


def steps(ctx: Context, journal: Journal) -> list[Step]:
    the_plan = journal.plan
    member_dir = ctx.paths.etcd_member_resources
    domain = the_plan["dns_name"].split(".", 1)[1]

    def request_certificates() -> None:
        if not ctx.signer_token:
            raise PreconditionFailed("OCP_RECOVERY_SIGNER_TOKEN is not set",
                                     next_step="export it, then ocp-recovery resume")
        etcd_ca = (member_dir / "ca.crt").read_bytes()
        cas = {"etcd": etcd_ca, "metric": (member_dir / "metric-ca.crt").read_bytes()}
        endpoint = SignerEndpoint(the_plan["signer"], ctx.signer_token, etcd_ca,
                                  ctx.timeouts.dial * 6)
        for request in member_cert_requests(the_plan["dns_name"], the_plan["ip"], domain,
                                            ctx.extra_peer_ips):
            crt = member_dir / f"{request.file_stem}.crt"
            if _valid(crt, cas[request.signer]):
                continue
            request_certificate(endpoint, request, member_dir, cas[request.signer])

    return [Step("request-certificates", f"get server, peer and metric certificates for "
                 f"{the_plan['dns_name']} from {the_plan['signer']} into "
                 f"{ctx.paths.shown(member_dir)}", request_certificates),
            *member_add.steps(ctx, journal)]


def _valid(crt: Any, ca_pem: bytes) -> bool:
    if not crt.is_file() or not crt.with_suffix(".key").is_file():
        return False
    certs = load_certificates(crt.read_bytes())
    return bool(certs) and certs[0].not_valid_after_utc > dt.datetime.now(dt.UTC) and any(
        certs[0].issuer == ca.subject for ca in load_certificates(ca_pem))


def dry_run(ctx: Context, signer_ip: str, name: str,
            peer_url: str | None) -> tuple[dict[str, Any], list[str]]:
    the_plan = plan(ctx, signer_ip, name, peer_url)
    return the_plan, describe(steps(ctx, Journal.in_memory(the_plan)))


def run(ctx: Context, the_plan: dict[str, Any], *, wait: bool = True) -> AddResult:
    started = time.monotonic()
    execute(ctx.paths.state_dir, OPERATION, the_plan, lambda j: steps(ctx, j))
    result = finish(ctx, the_plan, wait=wait)
    result.seconds = time.monotonic() - started
    return result
