"""`ocp-recovery snapshot …`: backups checked offline."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer
import yaml

from toolbox import log
from toolbox.commands.common import (
    DRY_RUN,
    YES,
    GlobalOptions,
    command,
    confirm,
    emit,
    host_path,
)
from toolbox.errors import InvalidInput
from toolbox.report import Report

if TYPE_CHECKING:
    from toolbox.objects.backup import Selection

commands = typer.Typer(help="Look inside backups: verify, list, show, diff, browse.",
                       no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(commands, name="snapshot")


@command(commands, "verify")
def verify(options: GlobalOptions,
           path: Annotated[str, typer.Argument(
               help="Host path: what restore takes, a backup directory, a snapshot_*.db, or "
               "a 4.3.0 snapshot_db_kuberesources_*.tar.gz.")],
           skip_hash_check: Annotated[bool, typer.Option(
               help="Accept a raw data-dir db that has no sha256 trailer.")] = False) -> None:
    """Check a backup (a snapshot, a 4.3.0 tarball, or every set in a directory) without
    etcd."""
    verify_and_report(options, host_path(path, options.context()), skip_hash_check)


def verify_and_report(options: GlobalOptions, path: str, skip_hash_check: bool = False) -> None:
    from toolbox.procedures import verify as procedure

    results = procedure.run(options.context(), path, skip_hash_check=skip_hash_check)
    for result in results:
        if options.json_result:
            r = result.report
            log.say_json({"event": "verify.result", "set": result.name, "ok": True,
                          "revision": r.revision if r else None,
                          "keys": r.keys if r else None,
                          "db_sha256": r.db_sha256 if r else None,
                          "archive_ok": result.archive_ok})
        else:
            log.say(procedure.describe(result))


BACKUP = Annotated[str, typer.Argument(
    help="Host path: a backup directory (its newest set), a file of a set, or a "
    "snapshot_*.db.")]
NAMESPACE = Annotated[str | None, typer.Option(
    "--namespace", "-n", help="Only the objects of this namespace (and the namespace "
    "itself).")]
RESOURCE = Annotated[str | None, typer.Option(
    help="Only this resource, as `snapshot ls` names it (configmaps, deployments, "
    "routes.route.openshift.io).")]
PREFIX = Annotated[str | None, typer.Option(help="Only keys starting with this.")]


def selection(namespace: str | None = None, resource: str | None = None,
              prefix: str | None = None, keys: list[str] | None = None) -> Selection:
    from toolbox.objects.backup import Selection

    return Selection(namespace or None, resource or None, prefix or None, tuple(keys or ()))


@command(commands, "ls")
def ls(options: GlobalOptions, backup: BACKUP, namespace: NAMESPACE = None,
       resource: RESOURCE = None, prefix: PREFIX = None) -> None:
    """List the keys a backup holds, offline: resource, namespace, name, mod revision, size,
    and whether each value is protobuf, JSON or encrypted at rest."""
    from toolbox.procedures import snapshot_list as procedure

    context = options.context()
    listing = procedure.run(context, host_path(backup, context),
                            selection(namespace, resource, prefix))
    report = listing.report()
    if options.json_result:
        emit(options, report)
        return
    # One write for the whole table: a line at a time costs a flush per key.
    log.say("\n".join([report.summary, *listing.table(), *report.lines()[1:]])
            if listing.keys else "\n".join(report.lines()))


@command(commands, "get", prints_objects=True)
def get(options: GlobalOptions, backup: BACKUP,
        etcd_key: Annotated[str, typer.Argument(
            metavar="KEY", help="The etcd key, as `snapshot ls --json` shows it, e.g. "
            "/kubernetes.io/configmaps/NAMESPACE/NAME.")]) -> None:
    """Show one object of a backup, offline, decrypted when it is encrypted at rest: YAML
    by default, -o json, or -o raw for the bytes as etcd stores them."""
    from toolbox.commands.common import OutputFormat
    from toolbox.procedures import snapshot_get as procedure

    context = options.context()
    raw = options.output_format == OutputFormat.raw
    shown = procedure.run(context, host_path(backup, context), etcd_key, decode=not raw)
    if raw:
        sys.stdout.buffer.write(shown.stored)
        sys.stdout.buffer.flush()
        return
    if options.json_result:
        log.say(json.dumps(shown.document, indent=2, sort_keys=False))
    else:
        log.say(yaml.safe_dump(shown.document, sort_keys=False).rstrip("\n"))
    if not shown.complete:
        log.get(__name__).warning(
            "snapshot.get.partial", key=etcd_key,
            note="only the metadata of this protobuf kind is decoded offline; "
            f"`ocp-recovery snapshot browse {backup}` serves it whole")


@command(commands, "diff")
def diff(options: GlobalOptions, backup: BACKUP,
         other: Annotated[str | None, typer.Argument(
             help="A second backup (as BACKUP); or --live.")] = None,
         live: Annotated[bool, typer.Option(
             "--live", help="Compare with the live etcd (keys and revisions only).")] = False,
         namespace: NAMESPACE = None, resource: RESOURCE = None, prefix: PREFIX = None) -> None:
    """Keys added, removed and changed from BACKUP to BACKUP2 or to the live cluster, by
    resource and namespace."""
    from toolbox.procedures import snapshot_diff as procedure

    if (other is None) == (not live):
        raise InvalidInput("compare with one thing: a second backup, or --live",
                           next_step=f"ocp-recovery snapshot diff {backup} BACKUP2, or "
                           f"ocp-recovery snapshot diff {backup} --live")
    context = options.context()
    emit(options, procedure.run(context, host_path(backup, context),
                                host_path(other, context) if other else None,
                                selection(namespace, resource, prefix)).report())


@command(commands, "browse")
def browse(options: GlobalOptions,
           backup: Annotated[str | None, typer.Argument(
               help="Host path: a backup directory (its newest set), a file of a set, or a "
               "snapshot_*.db.")] = None,
           stop: Annotated[bool, typer.Option(
               "--stop", help="Remove the scratch etcd and kube-apiserver, and their files."
           )] = False,
           dry_run: DRY_RUN = False, yes: YES = False) -> None:
    """Serve a whole backup with a scratch etcd and kube-apiserver on this master's localhost
    (port 7444), for `oc --kubeconfig …`; nothing touches the live etcd. --stop removes it."""
    from toolbox.procedures import snapshot_browse as procedure

    context = options.context()
    if stop:
        if backup is not None:
            raise InvalidInput("--stop takes no backup: it removes the one being browsed",
                               next_step="ocp-recovery snapshot browse --stop")
        removed = procedure.stop(context)
        emit(options, Report("snapshot.browse.stopped",
                             f"stopped browsing: removed {removed}" if removed else
                             "no backup is being browsed on this host: nothing to stop",
                             {"removed": removed}))
        return
    if backup is None:
        raise InvalidInput("which backup? snapshot browse BACKUP (or --stop)",
                           next_step="ocp-recovery snapshot browse /home/core/backup")
    plan = procedure.plan(context, host_path(backup, context))
    if confirm(options, context, procedure.confirmation(plan), procedure.changes(context, plan),
               plan.warnings, dry_run=dry_run, yes=yes):
        emit(options, procedure.start(context, plan).report())
