"""`ocp-recovery backup`: guide 1.1, and the off-site copies of issue 15 (push, ls, verify,
fetch, prune, keygen). `backup DIR` stays the guide's form: a first word that is not one of
the subcommands is the directory."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer import _click  # typer's vendored click: the type its group methods take
from typer._click.exceptions import UsageError
from typer.core import TyperGroup

from toolbox.commands.common import (
    DRY_RUN,
    YES,
    GlobalOptions,
    command,
    confirm,
    emit,
    host_path,
)
from toolbox.journal import Confirmation
from toolbox.report import Report

TAKE = "take"


class _BackupGroup(TyperGroup):
    def parse_args(self, ctx: _click.Context, args: list[str]) -> list[str]:
        if not args:  # the guide's `backup DIR` with DIR forgotten: say so, not only the help
            raise UsageError("Missing argument 'DIR': `backup DIR` saves a backup set in DIR; "
                             "`backup --help` lists the subcommands.", ctx)
        if args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [TAKE, *args]
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: _click.Context) -> list[str]:
        return [name for name in super().list_commands(ctx) if name != TAKE]


commands = typer.Typer(
    cls=_BackupGroup, subcommand_metavar="DIR | COMMAND [ARGS]...",
    help="Guide 1.1: `backup DIR [--upload s3://BUCKET/PREFIX …]` saves a verified etcd "
    "snapshot and the static-resources archive (`backup take --help` lists its options); the "
    "subcommands below copy sets off-site, encrypted and verified, and bring them back.")


def register(app: typer.Typer) -> None:
    app.add_typer(commands, name="backup")


ENDPOINT = Annotated[str | None, typer.Option(
    "--endpoint-url", help="S3 endpoint, e.g. https://s3.example.com (default: AWS_ENDPOINT_URL "
    "or AWS itself). Credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or "
    "AWS_PROFILE; the endpoint's CA from AWS_CA_BUNDLE.")]
RECIPIENT = Annotated[list[str] | None, typer.Option(
    "--recipient", "-r", help="age1… or ssh-ed25519/ssh-rsa public key to encrypt to "
    "(repeatable; `backup keygen FILE` makes a pair).")]
RECIPIENTS_FILE = Annotated[list[str] | None, typer.Option(
    "--recipients-file", "-R", help="Host file of public keys, one per line (repeatable).")]
LOCK_DAYS = Annotated[int | None, typer.Option(
    help="Object Lock retention in days on every uploaded object (the bucket must have "
    "Object Lock enabled).")]
LOCK_MODE = Annotated[str, typer.Option(help="governance or compliance.")]
IDENTITY = Annotated[str, typer.Option(
    "--identity", "-i", help="Host file of the age identity (private key) the set was "
    "encrypted for.")]
PROGRESS = Annotated[bool, typer.Option(help="Progress bar on a TTY.")]


def _upload_request(context: Any, source: str, url: str, recipient: list[str] | None,
                    recipients_file: list[str] | None, endpoint_url: str | None,
                    lock_days: int | None, lock_mode: str, every_set: bool,
                    progress: bool) -> Any:
    from toolbox.procedures.offsite_upload import UploadRequest

    return UploadRequest(source, url, tuple(recipient or ()),
                         tuple(host_path(f, context) for f in recipients_file or ()),
                         endpoint_url, lock_days, lock_mode.lower(), every_set, progress)


@command(commands, TAKE)
def backup(options: GlobalOptions,
           directory: Annotated[str, typer.Argument(
               metavar="DIR", help="Host directory, e.g. /home/core/backup.")],
           keep: Annotated[int | None, typer.Option(
               help="Keep this many newest verified backups; prune older ones after this one "
               "verified.")] = None,
           upload: Annotated[str | None, typer.Option(
               help="Then encrypt, upload and read back the new set to s3://BUCKET/PREFIX.")
                             ] = None,
           recipient: RECIPIENT = None, recipients_file: RECIPIENTS_FILE = None,
           endpoint_url: ENDPOINT = None, lock_days: LOCK_DAYS = None,
           lock_mode: LOCK_MODE = "governance",
           keep_remote: Annotated[int | None, typer.Option(
               help="After the upload, keep this many newest sets on the store.")] = None,
           progress: PROGRESS = True) -> None:
    """Guide 1.1: save a verified etcd snapshot and the static-resources archive."""
    from toolbox.procedures import backup as procedure

    context = options.context()
    directory = host_path(directory, context)
    upload_request = _upload_request(context, directory, upload, recipient, recipients_file,
                                     endpoint_url, lock_days, lock_mode, False, progress) \
        if upload else None
    if not upload and (recipient or recipients_file or lock_days or keep_remote):
        from toolbox.errors import InvalidInput

        raise InvalidInput("--recipient, --recipients-file, --lock-days and --keep-remote "
                           "only apply with --upload s3://BUCKET/PREFIX",
                           next_step="add --upload s3://BUCKET/PREFIX, or drop them")
    result = procedure.run(context, procedure.BackupRequest(
        directory, keep, progress, upload_request, keep_remote))
    emit(options, result.report())


@command(commands, "push")
def push(options: GlobalOptions,
         source: Annotated[str, typer.Argument(
             help="Host path: a backup directory (its newest set) or a file of one set; "
             "4.3-made sets too.")],
         url: Annotated[str, typer.Argument(help="s3://BUCKET/PREFIX")],
         recipient: RECIPIENT = None, recipients_file: RECIPIENTS_FILE = None,
         endpoint_url: ENDPOINT = None, lock_days: LOCK_DAYS = None,
         lock_mode: LOCK_MODE = "governance",
         every_set: Annotated[bool, typer.Option(
             "--all", help="Every set of the directory not yet on the store.")] = False,
         progress: PROGRESS = True) -> None:
    """Encrypt a backup set already on disk, upload it, read it back, then its manifest."""
    from toolbox.procedures import offsite_upload as procedure

    context = options.context()
    result = procedure.run(context, _upload_request(
        context, host_path(source, context), url, recipient, recipients_file, endpoint_url,
        lock_days, lock_mode, every_set, progress))
    emit(options, result.report())


@command(commands, "ls")
def list_sets(options: GlobalOptions,
              where: Annotated[str, typer.Argument(
                  help="A host backup directory or s3://BUCKET/PREFIX.")],
              endpoint_url: ENDPOINT = None) -> None:
    """Each backup set: time, age, sizes, etcd revision, cluster ID, verified, encrypted,
    where."""
    from toolbox.procedures import backup_list as procedure
    from toolbox.store.url import is_store_url

    context = options.context()
    shown = where if is_store_url(where) else host_path(where, context)
    emit(options, procedure.run(context, shown, endpoint_url).report())


@command(commands, "status")
def status(options: GlobalOptions,
           where: Annotated[str, typer.Argument(
               help="A host backup directory or s3://BUCKET/PREFIX.")],
           max_age: Annotated[str, typer.Option(
               help="Fresh when the newest verified set is at most this old: 26h, 90m, 2d, "
               "1d12h. Older, or no verified set: exit 17.")] = "26h",
           endpoint_url: ENDPOINT = None) -> None:
    """Is the newest verified backup set fresh? Its age, size, etcd revision, whether it is
    off-site, and the newer sets passed over (for monitoring, and before maintenance)."""
    from toolbox.errors import BackupStale
    from toolbox.procedures import backup_status as procedure
    from toolbox.store.url import is_store_url

    context = options.context()
    shown = where if is_store_url(where) else host_path(where, context)
    found = procedure.run(context, shown, max_age, endpoint_url)
    emit(options, found.report())
    if not found.fresh:  # the report is the message: one line, or the one JSON object
        raise typer.Exit(BackupStale.exit_code)


@command(commands, "verify")
def verify(options: GlobalOptions,
           where: Annotated[str, typer.Argument(
               help="s3://BUCKET/PREFIX[/SET] (every complete set, or the one named), or a "
               "host backup directory.")],
           identity: Annotated[str | None, typer.Option(
               "--identity", "-i", help="Also decrypt and check each set as a restore would "
               "(host file of the age identity).")] = None,
           endpoint_url: ENDPOINT = None) -> None:
    """Re-check stored sets: the ciphertext's sha256 against the manifest; with --identity
    also the snapshot's trailer and bbolt structure and the archive."""
    from toolbox.store.url import is_store_url

    context = options.context()
    if not is_store_url(where):
        from toolbox.commands.snapshot import verify_and_report

        verify_and_report(options, host_path(where, context))
        return
    from toolbox.procedures import offsite_verify as procedure

    emit(options, procedure.run(context, procedure.RemoteVerifyRequest(
        where, host_path(identity, context) if identity else None, endpoint_url)).report())


@command(commands, "fetch")
def fetch(options: GlobalOptions,
          url: Annotated[str, typer.Argument(
              help="s3://BUCKET/PREFIX[/SET] (default: the newest complete set).")],
          directory: Annotated[str, typer.Argument(help="Host directory to write the set to.")],
          identity: IDENTITY, endpoint_url: ENDPOINT = None, progress: PROGRESS = True) -> None:
    """Download, decrypt and verify a stored set into a host directory."""
    from toolbox.procedures import offsite_fetch as procedure

    context = options.context()
    emit(options, procedure.run(context, procedure.FetchRequest(
        url, host_path(directory, context), host_path(identity, context), endpoint_url,
        progress)).report())


@command(commands, "prune")
def prune(options: GlobalOptions,
          url: Annotated[str, typer.Argument(help="s3://BUCKET/PREFIX")],
          keep: Annotated[int, typer.Option(
              help="Never fewer than this many complete sets (the newest is always kept).")],
          keep_days: Annotated[float | None, typer.Option(
              help="Also keep every set younger than this many days.")] = None,
          endpoint_url: ENDPOINT = None, dry_run: DRY_RUN = False, yes: YES = False) -> None:
    """Remove old sets from the store: never below --keep, never one under Object Lock;
    unfinished uploads older than a day go too."""
    from toolbox.procedures import offsite_prune as procedure

    context = options.context()
    request = procedure.PruneRequest(url, keep, keep_days, endpoint_url)
    bucket = procedure.connect(context, request)
    pruning = procedure.plan(request, bucket)
    doomed = [f"delete {s.url} (every object and version)" for s in pruning.doomed] + \
        [f"delete the unfinished upload {pruning.location.with_set(name)}"
         for name, _ in pruning.unfinished]
    if doomed and not confirm(options, context, Confirmation(
            f"prune {pruning.location}", "Delete these sets from the store?"), doomed, [],
            dry_run=dry_run, yes=yes):
        return
    emit(options, procedure.execute(bucket, pruning).report())


@command(commands, "keygen")
def keygen(options: GlobalOptions,
           identity_file: Annotated[str, typer.Argument(
               help="Host file to write the age identity (private key) to; must not exist.")]
           ) -> None:
    """Make an age key pair: the identity file (0600) and its public key to encrypt to."""
    from toolbox.host.files import atomic_write
    from toolbox.store.encryption import new_identity

    context = options.context()
    shown = host_path(identity_file, context)
    target = context.paths.host(shown)
    if target.exists() or target.is_symlink():
        from toolbox.errors import InvalidInput

        raise InvalidInput(f"{shown} exists: an identity is never overwritten (the backups "
                           "encrypted to it would be lost)", next_step="give a new file name")
    if not target.parent.is_dir():
        from toolbox.errors import InvalidInput

        raise InvalidInput(f"{shown.rsplit('/', 1)[0] or '/'} is not a directory",
                           next_step="give a file in an existing directory")
    text, public = new_identity()
    atomic_write(target, text.encode())
    emit(options, Report("backup.keygen", f"identity written to {shown}; public key {public}",
                         {"identity_file": shown, "recipient": public},
                         next=[f"encrypt to it: --recipient {public}",
                               f"move {shown} off this cluster, to where the operators keep "
                               "secrets: a restore needs it, and anyone with it can read the "
                               "etcd encryption keys in the backups"]))
