"""The root of `ocp-recovery`: the global options, --version, and every group."""

from __future__ import annotations

import inspect
from typing import Annotated, Any

import typer

from toolbox import __version__
from toolbox.commands import (
    backup,
    certs,
    csr,
    drill,
    inflight,
    member,
    reference,
    restore,
    sandbox,
    signer,
    snapshot,
)
from toolbox.commands.common import GLOBAL_NAMES, GlobalOptions, global_parameters


def _version(shown: bool) -> None:
    if shown:
        typer.echo(f"ocp-recovery {__version__}")
        raise typer.Exit(0)


def _root(typer_context: typer.Context, **values: Any) -> None:
    """Back up etcd and recover an OpenShift 4.3 control plane, safely.

    Global options may be given before the command or after it. Exit codes:
    `ocp-recovery exit-codes`."""
    values.pop("version", None)
    typer_context.obj = GlobalOptions(**{n: values[n] for n in GLOBAL_NAMES})


_root.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
    inspect.Parameter("typer_context", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                      annotation=typer.Context),
    *global_parameters(),
    inspect.Parameter("version", inspect.Parameter.KEYWORD_ONLY, default=False,
                      annotation=Annotated[bool, typer.Option(
                          "--version", callback=_version, is_eager=True,
                          help="Print the version and exit.")])])
_root.__annotations__ = {p.name: p.annotation
                         for p in _root.__signature__.parameters.values()}  # type: ignore[attr-defined]


def build_app(prog_name: str = "ocp-recovery") -> typer.Typer:
    app = typer.Typer(name=prog_name, no_args_is_help=True, add_completion=True,
                      pretty_exceptions_enable=False, rich_markup_mode=None,
                      context_settings={"help_option_names": ["--help", "-h"]})
    app.callback()(_root)
    for module in (backup, restore, member, signer, inflight, certs, csr, snapshot, sandbox,
                   drill, reference):
        module.register(app)
    return app
