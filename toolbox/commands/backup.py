"""`ocp-recovery backup`: guide 1.1."""

from __future__ import annotations

from typing import Annotated

import typer

from toolbox.commands.common import GlobalOptions, command, emit, host_path

commands = typer.Typer()


def register(app: typer.Typer) -> None:
    app.registered_commands += commands.registered_commands


@command(commands, "backup")
def backup(options: GlobalOptions,
           directory: Annotated[str, typer.Argument(
               help="Host directory, e.g. /home/core/backup.")],
           keep: Annotated[int | None, typer.Option(
               help="Keep this many newest verified backups; prune older ones after this one "
               "verified.")] = None,
           progress: Annotated[bool, typer.Option(
               help="Progress bar on a TTY.")] = True) -> None:
    """Guide 1.1: save a verified etcd snapshot and the static-resources archive."""
    from toolbox.procedures import backup as procedure

    context = options.context()
    result = procedure.run(context, procedure.BackupRequest(
        host_path(directory, context), keep, progress))
    emit(options, result.report())
