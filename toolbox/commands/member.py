"""`ocp-recovery member …`: guide chapter 2 and 3.2 steps 3-4."""

from __future__ import annotations

from typing import Annotated

import typer

from toolbox.commands.common import (
    DRY_RUN,
    WAIT,
    YES,
    GlobalOptions,
    command,
    confirm,
    emit,
    run_journaled,
)

commands = typer.Typer(help="etcd members: remove a failed master's, add this master's.",
                       no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(commands, name="member")


MEMBER_NAME = Annotated[str, typer.Argument(
    help="This master's member name, etcd-member-<node>.")]
PEER_URL = Annotated[str | None, typer.Option(
    help="Peer URL to advertise (default https://<ETCD_DNS_NAME>:2380 when it resolves, else "
    "the IP).")]


@command(commands, "remove")
def remove(options: GlobalOptions,
           name: Annotated[str, typer.Argument(
               help="The member's exact name, etcd-member-<node>.")],
           force: Annotated[bool, typer.Option(
               help="Also remove the local member, or one whose removal loses quorum.")
           ] = False,
           dry_run: DRY_RUN = False, yes: YES = False) -> None:
    """Guide chapter 2: remove a failed master's member (run on a healthy master)."""
    from toolbox.procedures import member_remove as procedure

    context = options.context()
    plan = procedure.plan(context, name, force=force)
    if not confirm(options, context, procedure.confirmation(plan), procedure.changes(plan), (),
                   dry_run=dry_run, yes=yes):
        return
    emit(options, procedure.execute(context, plan).report())


@command(commands, "add")
def add(options: GlobalOptions,
        active_ip: Annotated[str, typer.Argument(help="IP of a healthy etcd member.")],
        name: MEMBER_NAME, peer_url: PEER_URL = None, wait: WAIT = True,
        dry_run: DRY_RUN = False, yes: YES = False) -> None:
    """Guide chapter 2: add this master (valid certificates) back as a member."""
    from toolbox.procedures import member_add as procedure

    context = options.context()
    run_journaled(options, context, procedure.PROCEDURE,
                  procedure.AddRequest(active_ip, name, peer_url, wait),
                  dry_run=dry_run, yes=yes)


@command(commands, "recover")
def recover(options: GlobalOptions,
            signer_ip: Annotated[str, typer.Argument(
                help="IP of the surviving master, which runs etcd and the signer.")],
            name: MEMBER_NAME, peer_url: PEER_URL = None, wait: WAIT = True,
            dry_run: DRY_RUN = False, yes: YES = False) -> None:
    """Guide 3.2 steps 3-4: get certificates from the signer, then join as a member
    (needs OCP_RECOVERY_SIGNER_TOKEN)."""
    from toolbox.procedures import member_recover as procedure

    context = options.context()
    run_journaled(options, context, procedure.PROCEDURE,
                  procedure.RecoverRequest(signer_ip, name, peer_url, wait),
                  dry_run=dry_run, yes=yes)
