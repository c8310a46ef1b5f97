"""`ocp-recovery restore`: guide 3.2 step 1 and 3.3."""

from __future__ import annotations

from typing import Annotated

import typer

from toolbox.commands.common import (
    DRY_RUN,
    WAIT,
    YES,
    GlobalOptions,
    command,
    host_path,
    run_journaled,
)
from toolbox.errors import InvalidInput

commands = typer.Typer()


def register(app: typer.Typer) -> None:
    app.registered_commands += commands.registered_commands


@command(commands, "restore")
def restore(options: GlobalOptions,
            backup: Annotated[str, typer.Argument(
                help="Host path: a backup directory, a snapshot_*.db, or a 4.3.0 "
                "snapshot_db_kuberesources_*.tar.gz.")],
            initial_cluster: Annotated[str | None, typer.Option(
                help="NAME=https://HOST:2380[,…]: one member (quorum restore) or every "
                "master, identical on each (env INITIAL_CLUSTER).")] = None,
            name: Annotated[str | None, typer.Option(
                help="This master's INITIAL_CLUSTER entry, when /run/etcd/environment cannot "
                "say.")] = None,
            skip_hash_check: Annotated[bool, typer.Option(
                help="Accept a raw data-dir db without sha256 trailer.")] = False,
            bump_revision: Annotated[bool, typer.Option(
                help="Move etcd's revision past the old one (needs etcdutl 3.5.10+).")] = True,
            rewind_healthy_cluster: Annotated[bool, typer.Option(
                help="Restore although this master's etcd is a healthy member of a cluster "
                "with quorum (guide 3.3: every master is restored and every object goes back "
                "in time).")] = False,
            wait: WAIT = True, dry_run: DRY_RUN = False, yes: YES = False) -> None:
    """Guide 3.2 step 1 / 3.3: restore etcd on this master from a backup."""
    from toolbox.procedures import restore as procedure

    context = options.context()
    cluster = initial_cluster or context.initial_cluster or ""
    if not cluster.strip():
        raise InvalidInput("INITIAL_CLUSTER is empty: neither --initial-cluster nor the "
                           "environment variable INITIAL_CLUSTER gives one",
                           next_step="pass --initial-cluster NAME=https://HOST:2380[,…] (or "
                           "export INITIAL_CLUSTER=NAME=https://HOST:2380[,…])")
    request = procedure.RestoreRequest(host_path(backup, context), cluster, name,
                                       skip_hash_check, bump_revision, rewind_healthy_cluster,
                                       wait)
    run_journaled(options, context, procedure.PROCEDURE, request, dry_run=dry_run, yes=yes)
