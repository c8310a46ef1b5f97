"""Guide 3.2 steps 3-4: a new master with no etcd certificates joins the cluster.

`etcd-member-recover.sh SIGNER_IP NAME`: the server, peer and metric certificates are
requested from our signer (with the one-time token it printed), each checked against the
etcd and metric CAs on this host, and written only once all three are got
(toolbox/pki/agent.py); then everything member add does.
SETUP_ETCD_ENVIRONMENT and KUBE_CLIENT_AGENT are accepted and not needed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from toolbox.context import Context
from toolbox.errors import InvalidInput
from toolbox.journal import Confirmation, Journal, Procedure, Step, StepRun
from toolbox.pki import agent
from toolbox.pki.profiles import member_cert_requests
from toolbox.procedures import member_add
from toolbox.procedures.member_add import AddPlan, AddRequest, AddResult

SIGNER_PORT = 9943


@dataclass(frozen=True)
class RecoverRequest:
    signer_ip: str     # the surviving master: it runs the signer and the member to add through
    name: str
    peer_url: str | None = None
    wait: bool = True


@dataclass(frozen=True)
class RecoverPlan(AddPlan):
    signer: str        # the signer's URL


class MemberRecoverProcedure(Procedure[RecoverRequest, RecoverPlan, AddResult]):
    operation = "member-recover"
    plan_type = RecoverPlan

    def plan(self, ctx: Context, request: RecoverRequest) -> RecoverPlan:
        if not ctx.signer_token:
            raise InvalidInput(
                "no signer token: export OCP_RECOVERY_SIGNER_TOKEN with the token that "
                "`ocp-recovery signer serve` printed on the survivor",
                next_step="export OCP_RECOVERY_SIGNER_TOKEN=<token>, then run this again")
        # The member to reach for `member add` is the signer's master (spec §6).
        checked = member_add.check(
            ctx, AddRequest(request.signer_ip, request.name, request.peer_url, request.wait),
            certificates=False, operation=self.operation)
        return RecoverPlan(**dataclasses.asdict(checked),
                           signer=f"https://{request.signer_ip}:{SIGNER_PORT}")

    def steps(self, ctx: Context, plan: RecoverPlan) -> list[Step[RecoverPlan]]:
        return [Step("request-certificates", f"get server, peer and metric certificates for "
                     f"{plan.dns_name} from {plan.signer} into "
                     f"{ctx.paths.shown(ctx.paths.etcd_member_resources)}",
                     _request_certificates),
                *member_add.add_steps(ctx, plan)]

    def finish(self, ctx: Context, plan: RecoverPlan, journal: Journal) -> AddResult:
        # The signer's certificates are here now: the plan's "none yet" no longer holds.
        warnings = tuple(w for w in plan.warnings if w != member_add.NO_CLIENT_CERTIFICATE_YET)
        return member_add.result_of(
            plan, journal, warnings,
            "OCP_RECOVERY_SIGNER_TOKEN=<token> ocp-recovery member recover")

    def confirmation(self, plan: RecoverPlan) -> Confirmation:
        return Confirmation(f"recover {plan.name} ({plan.peer_url}) with certificates from "
                            f"{plan.signer}",
                            "Get new etcd certificates and add this master to the cluster?")


PROCEDURE = MemberRecoverProcedure()
OPERATION = PROCEDURE.operation


def _request_certificates(run: StepRun[RecoverPlan]) -> None:
    ctx, plan = run.ctx, run.plan
    member_dir = ctx.paths.etcd_member_resources
    etcd_ca = (member_dir / "ca.crt").read_bytes()
    cas = {"etcd": etcd_ca, "metric": (member_dir / "metric-ca.crt").read_bytes()}
    # No token is needed when every answer is kept already (the signer may be gone).
    endpoint = agent.SignerEndpoint(plan.signer, ctx.signer_token or "", etcd_ca,
                                    ctx.timeouts.dial * 6)
    # Not the plan's stash: a run refused at this first step is run again with a new
    # plan, and must use the keys and answers the signer may already have given.
    pending = ctx.paths.state_dir / "member-recover-keys"
    domain = plan.dns_name.split(".", 1)[1]
    agent.request_certificates(endpoint, member_cert_requests(
        plan.dns_name, plan.ip, domain, ctx.extra_peer_ips), cas, member_dir, pending)
