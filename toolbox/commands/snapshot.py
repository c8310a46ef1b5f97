"""`ocp-recovery snapshot …`: backups checked offline."""

from __future__ import annotations

from typing import Annotated

import typer

from toolbox import log
from toolbox.commands.common import GlobalOptions, command, host_path

commands = typer.Typer(help="Inspect snapshot files offline.", no_args_is_help=True)


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
