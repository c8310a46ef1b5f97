"""`ocp-recovery objects …`: single objects or a namespace back from a backup."""

from __future__ import annotations

from typing import Annotated

import typer

from toolbox.commands.common import DRY_RUN, YES, GlobalOptions, command, host_path, run_journaled
from toolbox.commands.snapshot import BACKUP, NAMESPACE, RESOURCE, selection

commands = typer.Typer(help="Restore single objects or a namespace from a backup.",
                       no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(commands, name="objects")


@command(commands, "restore")
def restore(options: GlobalOptions, backup: BACKUP, namespace: NAMESPACE = None,
            resource: RESOURCE = None,
            objects: Annotated[list[str] | None, typer.Option(
                "--object", help="The etcd key of an object to restore (repeat for more), as "
                "`snapshot ls --json` shows it.")] = None,
            replace: Annotated[bool, typer.Option(
                help="Also replace objects that changed since the backup (each only if it is "
                "still as the plan showed it).")] = False,
            dry_run: DRY_RUN = False, yes: YES = False) -> None:
    """Write objects back into the live etcd exactly as the backup holds them, create-only:
    nothing that exists now is overwritten (unless --replace). Journaled: resume/rollback."""
    from toolbox.procedures import objects_restore as procedure

    context = options.context()
    request = procedure.RestoreRequest(host_path(backup, context),
                                       selection(namespace, resource, None, objects), replace)
    run_journaled(options, context, procedure.PROCEDURE, request, dry_run=dry_run, yes=yes)
