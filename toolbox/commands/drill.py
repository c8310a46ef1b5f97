"""`ocp-recovery drill …`: rehearse a procedure of the guide on a sandbox, timed."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from toolbox import log
from toolbox.commands.common import GlobalOptions, command

commands = typer.Typer(help="Rehearse a procedure of the guide on a sandbox, timed.",
                       no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(commands, name="drill")


# name -> (help, default keys); the drills themselves are imported only when one runs.
DRILLS = {
    "backup": ("Guide 1.1 on a 3-master sandbox; proves the snapshot holds exactly the data.",
               2000),
    "quorum-restore": ("Guide 3.2 step 1: lose 2 of 3 masters, restore the survivor alone.",
                       1000),
    "restore-previous-state": ("Guide 3.3: restore the same backup on all three masters, "
                               "close together.", 1000),
    "replace-master": ("Chapter 2: lose a master, remove its member, recover a blank one via "
                       "the signer.", 1000),
    "quorum-loss": ("Guide 3.2 whole: lose 2 of 3, restore the survivor, recover 2 new "
                    "masters.", 1000),
    "expired-certs": ("Guide 3.4 whole: expire the control-plane certificates of a real "
                      "kube-apiserver, then recover them.", 0),
    "offsite-restore": ("Guide 3.2 when the backups were lost too: restore from an encrypted "
                        "copy on the sandbox's object store (Ceph), recover 2 new masters.",
                        1000),
    "object-restore": ("A namespace deleted with the API, put back from a backup with "
                       "`objects restore` (real kube-apiserver and controller manager).", 200),
    "scheduled-backup": ("The backup CronJob (manifests/backup, off-site and PVC variants) "
                         "run by a real kubelet and controllers on a sandbox node; etcd "
                         "stopped; concurrencyPolicy Forbid.", 0),
}
FILLABLE = ("quorum-restore", "quorum-loss", "offsite-restore")


def _drill_command(name: str, help_text: str, default_keys: int) -> None:
    def run_drill(options: GlobalOptions, **drill_options: Any) -> None:
        from toolbox.sandbox.drills import DRILLS as RUN

        log.say(RUN[name](os.environ, **drill_options).render())

    parameters = [
        inspect.Parameter("options", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          annotation=GlobalOptions),
        inspect.Parameter("etcd", inspect.Parameter.KEYWORD_ONLY, default="3.5",
                          annotation=Annotated[str, typer.Option(help="3.4, 3.5 or 3.5.16")]),
        inspect.Parameter("keys", inspect.Parameter.KEYWORD_ONLY, default=default_keys,
                          annotation=Annotated[int, typer.Option(
                              help="Keys written before the backup.")]),
        inspect.Parameter("directory", inspect.Parameter.KEYWORD_ONLY, default=None,
                          annotation=Annotated[Path | None, typer.Option(
                              "--dir", help="Work directory.")]),
        inspect.Parameter("keep", inspect.Parameter.KEYWORD_ONLY, default=False,
                          annotation=Annotated[bool, typer.Option(
                              "--keep-sandbox", help="Leave the sandbox running.")]),
    ]
    if name in FILLABLE:
        parameters.append(inspect.Parameter(
            "fill_mib", inspect.Parameter.KEYWORD_ONLY, default=0,
            annotation=Annotated[int, typer.Option(
                help="First grow the db to this many MiB (drill times at scale).")]))
    if name == "scheduled-backup":
        parameters.append(inspect.Parameter(
            "image", inspect.Parameter.KEYWORD_ONLY, default="localhost/ocp-recovery:latest",
            annotation=Annotated[str, typer.Option(
                help="The toolbox image the pods run (podman's; scripts/build-image.sh "
                "--local builds it).")]))
    run_drill.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    run_drill.__annotations__ = {p.name: p.annotation for p in parameters}
    run_drill.__doc__ = help_text
    run_drill.__name__ = name.replace("-", "_")
    command(commands, name)(run_drill)


for _name, (_help, _keys) in DRILLS.items():
    _drill_command(_name, _help, _keys)
