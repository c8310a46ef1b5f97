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
    objects,
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


# Which module holds each word that may follow `ocp-recovery`.
MODULES = {
    "backup": backup, "restore": restore, "status": inflight, "resume": inflight,
    "rollback": inflight, "regenerate-certificates": certs, "exit-codes": reference,
    "member": member, "signer": signer, "recovery-apiserver": certs, "control-plane": certs,
    "kubeconfig": certs, "kubelet": certs, "certs": certs, "csr": csr, "snapshot": snapshot,
    "objects": objects,
    "sandbox": sandbox, "drill": drill,
}
_VALUE_OPTIONS = {f"--{name.replace('_', '-')}" for name in GLOBAL_NAMES
                  if name not in ("json", "verbose")} | {"-o"}


def command_word(argv: list[str]) -> str | None:
    """The command or group named in argv (after any global options), if it is one."""
    words = iter(argv)
    for word in words:
        if word in _VALUE_OPTIONS:
            next(words, None)
        elif not word.startswith("-"):
            return word if word in MODULES else None
    return None


def build_app(prog_name: str = "ocp-recovery", argv: list[str] | None = None) -> typer.Typer:
    """The command tree; with `argv`, only the part it names when it names one: typer
    converts every registered command at each start (0.04 s for all of them)."""
    app = typer.Typer(name=prog_name, no_args_is_help=True, add_completion=True,
                      pretty_exceptions_enable=False, rich_markup_mode=None,
                      context_settings={"help_option_names": ["--help", "-h"]})
    app.callback()(_root)
    word = command_word(argv) if argv is not None else None
    chosen = [MODULES[word]] if word else list(dict.fromkeys(MODULES.values()))
    for module in chosen:
        module.register(app)
    return app
