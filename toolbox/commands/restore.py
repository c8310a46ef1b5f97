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
                "snapshot_db_kuberesources_*.tar.gz; or s3://BUCKET/PREFIX[/SET] (the newest "
                "complete set by default), fetched, decrypted and verified first.")],
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
            identity: Annotated[str | None, typer.Option(
                "--identity", "-i", help="With s3://: host file of the age identity (private "
                "key) the set was encrypted for.")] = None,
            endpoint_url: Annotated[str | None, typer.Option(
                "--endpoint-url", help="With s3://: the S3 endpoint (default AWS_ENDPOINT_URL)."
            )] = None,
            wait: WAIT = True, dry_run: DRY_RUN = False, yes: YES = False) -> None:
    """Guide 3.2 step 1 / 3.3: restore etcd on this master from a backup."""
    from toolbox.procedures import restore as procedure
    from toolbox.store.url import is_store_url

    context = options.context()
    if is_store_url(backup):
        backup = _fetched(options, backup, identity, endpoint_url)
    elif identity or endpoint_url:
        raise InvalidInput("--identity and --endpoint-url only apply to an s3:// backup",
                           next_step="drop them, or give s3://BUCKET/PREFIX[/SET]")
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


def _fetched(options: GlobalOptions, url: str, identity: str | None,
             endpoint_url: str | None) -> str:
    """The stored set, downloaded, decrypted and verified into the state directory (a second
    run, or a resumed restore, reuses it once it verifies): its host path."""
    from toolbox.procedures import offsite_fetch

    context = options.context()
    if not identity:
        raise InvalidInput(f"{url} is encrypted: a restore from it needs the identity",
                           next_step=f"ocp-recovery restore {url} --identity FILE …")
    result = offsite_fetch.run(context, offsite_fetch.FetchRequest(
        url, offsite_fetch.fetched_dir(context), host_path(identity, context), endpoint_url,
        for_restore=True))
    if not options.json_result:  # --json: the restore's own object is the one on stdout
        from toolbox import log

        log.say(f"{result.report().summary} (decrypted, with the etcd encryption keys: remove "
                f"{result.directory} once the cluster is back)")
    return result.directory
