"""`ocp-recovery csr …`: the kubelets' certificate signing requests (guide 3.4 step 8)."""

from __future__ import annotations

from typing import Annotated

import typer

from toolbox import log
from toolbox.commands.common import GlobalOptions, command

commands = typer.Typer(help="Certificate signing requests of the kubelets (guide 3.4).",
                       no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(commands, name="csr")


@command(commands, "list")
def csr_list(options: GlobalOptions, node: Annotated[list[str] | None, typer.Option(
        help="A node name CSRs may be for (repeat); others are invalid.")] = None) -> None:
    """Guide 3.4 step 8: the CSRs with requestor, node, usages and a verdict."""
    from toolbox.kube.client import connect
    from toolbox.procedures import csr as procedure

    reviews = procedure.list_csrs(connect(options.context()), set(node) if node else None)
    if options.json_result:
        log.say_json({"event": "csr.list", "csrs": [
            {"name": r.name, "state": r.state, "kind": r.kind, "node": r.node_name,
             "requestor": r.requestor, "usages": list(r.usages), "valid": r.valid,
             "reason": r.reason} for r in reviews]})
        return
    for line in procedure.list_lines(reviews):
        log.say(line)


@command(commands, "approve")
def csr_approve(options: GlobalOptions,
                names: Annotated[list[str] | None, typer.Argument(
                    help="CSR names to approve.")] = None,
                all_valid: Annotated[bool, typer.Option(
                    help="Approve every pending CSR that passes the checks (never the "
                    "others).")] = False,
                node: Annotated[list[str] | None, typer.Option(
                    help="A node name CSRs may be for (repeat); others are refused.")] = None
                ) -> None:
    """Guide 3.4 step 8: approve node CSRs that pass the checks; an invalid one is
    refused with its reason, never approved."""
    from toolbox.errors import PreconditionFailed
    from toolbox.kube.client import connect
    from toolbox.procedures import csr as procedure

    result = procedure.approve(connect(options.context()), names or None,
                               all_valid=all_valid, expected_nodes=set(node) if node else None)
    for line in result.lines():
        log.say(line)
    if names and result.refused:
        raise PreconditionFailed(
            "refused: " + "; ".join(f"{n}: {why}" for n, why in result.refused),
            state=f"approved: {', '.join(result.approved) or 'none'}; the refused CSRs are "
            "unchanged", next_step="ocp-recovery csr list (a kubelet asking again makes a new "
            "CSR; approve that one if it passes)")
