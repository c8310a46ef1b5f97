"""`status`, `resume`, `rollback`: the journaled operation of this host."""

from __future__ import annotations

import time

import typer

from toolbox.commands.common import DRY_RUN, YES, GlobalOptions, command, confirm, emit
from toolbox.report import Report

commands = typer.Typer()


def register(app: typer.Typer) -> None:
    app.registered_commands += commands.registered_commands


@command(commands, "status")
def status(options: GlobalOptions) -> None:
    """What operation is in flight on this host, step by step."""
    from toolbox.procedures import inflight

    emit(options, inflight.status(options.context()).report())


@command(commands, "resume")
def resume(options: GlobalOptions, dry_run: DRY_RUN = False) -> None:
    """Finish the operation a killed or failed run left part-way (its wait for health
    included). It does not ask again: the operation was confirmed when it started;
    `--dry-run` lists the steps it would run."""
    from toolbox.procedures import inflight

    if dry_run:
        context = options.context()
        confirmation, steps = inflight.resume_preview(context)
        confirm(options, context, confirmation, steps, (), dry_run=True, yes=False)
        return
    started = time.monotonic()
    emit(options, inflight.resume(options.context()).report(),
         seconds=time.monotonic() - started)


@command(commands, "rollback")
def rollback(options: GlobalOptions, dry_run: DRY_RUN = False, yes: YES = False) -> None:
    """Undo the last operation: the host as it was before it (data dir, manifests,
    revisions, kubelet)."""
    from toolbox.procedures import inflight

    context = options.context()
    confirmation, undos = inflight.rollback_preview(context)
    if not confirm(options, context, confirmation, undos, (), dry_run=dry_run, yes=yes):
        return
    journal = inflight.rollback(context)
    emit(options, Report("rollback.done", f"rolled back {journal.operation} "
                         f"{journal.data['id']}: the host is as before it",
                         {"operation": journal.operation, "id": journal.data["id"]}))
