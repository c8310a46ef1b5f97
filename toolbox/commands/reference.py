"""`ocp-recovery exit-codes`: the reference the README's table is generated from."""

from __future__ import annotations

from typing import Annotated

import typer

from toolbox import log
from toolbox.commands.common import GlobalOptions, command, emit
from toolbox.errors import all_error_classes
from toolbox.report import Report

commands = typer.Typer()


def register(app: typer.Typer) -> None:
    app.registered_commands += commands.registered_commands


def exit_code_rows() -> list[tuple[int, str]]:
    rows = [(0, "success (warnings, if any, are printed)"),
            (2, "usage error: unknown option or missing argument; nothing was changed")]
    rows += [(c.exit_code, c.summary) for c in all_error_classes()]
    return sorted(rows)


@command(commands, "exit-codes")
def exit_codes(options: GlobalOptions, markdown: Annotated[bool, typer.Option(
        help="As a Markdown table.")] = False) -> None:
    """The exit codes of every command."""
    rows = exit_code_rows()
    if markdown:
        log.say("| code | meaning |\n| --- | --- |")
        for code, text in rows:
            log.say(f"| {code} | {text} |")
        return
    first, *rest = [f"{code:>4}  {text}" for code, text in rows]
    emit(options, Report("exit_codes", first, {"codes": {str(c): t for c, t in rows}},
                         details=rest))
