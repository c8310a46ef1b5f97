"""Guide 3.4: `csr list` and `csr approve` for the kubelets' new certificates.

The guide says `oc get csr` then `oc adm certificate approve` by hand; here every CSR gets a
verdict first (toolbox.kube.csr) and only a pending, valid one is ever approved, so a forged
request among dozens of pending ones at 3 a.m. is not approved with the rest.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from toolbox import log
from toolbox.errors import ApiUnavailable, InvalidInput
from toolbox.kube.client import KubeClient
from toolbox.kube.csr import CsrReview, review

_log = log.get(__name__)

KIND = "CertificateSigningRequest"
APPROVAL_REASON = "OcpRecoveryApprove"


@dataclass
class ApproveResult:
    approved: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        lines = [f"approved {name}" for name in self.approved]
        lines += [f"refused  {name}: {reason}" for name, reason in self.refused]
        if not self.approved:
            lines.append("nothing approved: no named or pending CSR passed the checks")
        return lines


def sorted_reviews(reviews: Iterable[CsrReview]) -> list[CsrReview]:
    """Pending first (what needs a decision), then by name."""
    return sorted(reviews, key=lambda r: (r.state != "Pending", r.name))


def approval_body(obj: dict[str, Any], verdict: CsrReview) -> dict[str, Any]:
    """The object for PUT …/approval: a copy with an Approved condition added."""
    body = copy.deepcopy(obj)
    status = body.setdefault("status", {})
    status["conditions"] = [*(status.get("conditions") or []), {
        "type": "Approved", "status": "True", "reason": APPROVAL_REASON,
        "message": f"approved by ocp-recovery csr approve: {verdict.reason}"}]
    return body


def choose(reviews: list[CsrReview], names: list[str] | None, *,
           all_valid: bool) -> tuple[list[CsrReview], list[tuple[str, str]]]:
    """Which CSRs to approve and which to refuse (with why). Unknown names are an error
    before anything is approved."""
    if bool(names) == all_valid:
        raise InvalidInput("name the CSRs to approve, or pass --all-valid (not both)",
                           next_step="ocp-recovery csr list, then ocp-recovery csr approve "
                           "NAME… (or --all-valid)")
    by_name = {r.name: r for r in reviews}
    if names:
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise InvalidInput(f"no CSR named {', '.join(unknown)}",
                               next_step="ocp-recovery csr list shows the names")
        candidates = [by_name[n] for n in dict.fromkeys(names)]
    else:
        candidates = [r for r in reviews if r.state == "Pending"]
    chosen = [r for r in candidates if r.approvable]
    refused = [(r.name, r.reason) for r in candidates if not r.approvable]
    return chosen, refused


def list_objects(client: KubeClient) -> list[dict[str, Any]]:
    return client.list(KIND)


def list_csrs(client: KubeClient, expected_nodes: set[str] | None = None) -> list[CsrReview]:
    return sorted_reviews(review(o, expected_nodes) for o in list_objects(client))


def approve(client: KubeClient, names: list[str] | None, *, all_valid: bool,
            expected_nodes: set[str] | None = None) -> ApproveResult:
    objects = {str(o["metadata"]["name"]): o for o in list_objects(client)}
    reviews = sorted_reviews(review(o, expected_nodes) for o in objects.values())
    chosen, refused = choose(reviews, names, all_valid=all_valid)
    result = ApproveResult(refused=refused)
    for verdict in chosen:
        try:
            answer = client.approve_csr(verdict.name,
                                        approval_body(objects[verdict.name], verdict))
        except ApiUnavailable as exc:
            exc.state = f"approved so far: {', '.join(result.approved) or 'none'}"
            raise
        if answer is None:
            # Changed since we listed it (approved or denied by someone else): look again.
            result.refused.append((verdict.name, "it changed while we looked (409 "
                                   "Conflict); list the CSRs again"))
            continue
        result.approved.append(verdict.name)
        _log.info("csr.approved", name=verdict.name, node=verdict.node_name,
                  kind=verdict.kind)
    return result


def list_lines(reviews: list[CsrReview]) -> list[str]:
    """A table for `csr list`: the verdict beside each CSR."""
    lines = [f"{'NAME':<24} {'STATE':<9} {'KIND':<8} {'NODE':<20} {'VERDICT':<8} REASON"]
    for r in reviews:
        verdict = "ok" if r.valid else "INVALID"
        lines.append(f"{r.name:<24} {r.state:<9} {r.kind:<8} {r.node_name or '-':<20} "
                     f"{verdict:<8} {r.reason}")
    return lines
