"""The `ocp-recovery` entry point: run the typer app (toolbox/commands/) and turn its
outcome into the exit status. Only here do errors become exit codes."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

import typer

from toolbox import interruption, log
from toolbox.errors import Interrupted, RecoveryError

_log = log.get(__name__)


def main(argv: list[str] | None = None, prog_name: str = "ocp-recovery") -> int:
    """Run the CLI; returns (and exits with) the status."""
    interruption.install()
    code = run(sys.argv[1:] if argv is None else argv, prog_name)
    if argv is None:
        sys.exit(code)
    return code


def run(argv: list[str], prog_name: str = "ocp-recovery") -> int:
    """The command's exit status. With OCP_RECOVERY_TERMINATION_LOG, that file gets the
    outcome at exit too (the error that ended the run, else the result shown)."""
    from toolbox.commands.common import (
        forget_shown_result,
        shown_result,
        write_termination_log,
    )
    from toolbox.context import termination_log_of

    termination_log = termination_log_of(os.environ)
    forget_shown_result()
    try:
        code, failure = _outcome(argv, prog_name)
    except Exception as exc:  # a bug: its traceback follows; the pod says what failed too
        if termination_log is not None:
            write_termination_log(termination_log, {
                "event": "error", "error": type(exc).__name__,
                "summary": f"{RecoveryError.summary}: {exc}"}, 1)
        raise
    if termination_log is not None:
        write_termination_log(termination_log, failure or shown_result() or {}, code)
    return code


def _outcome(argv: list[str], prog_name: str) -> tuple[int, dict[str, Any] | None]:
    """The exit status, and the error that ended the run as JSON (None: it did not fail,
    or its result was shown)."""
    from toolbox.commands.app import build_app
    from toolbox.commands.common import error_json

    try:
        returned = build_app(prog_name, argv)(args=argv, prog_name=prog_name,
                                             standalone_mode=False)
        if returned == Interrupted.exit_code:  # typer returns Ctrl-C as a bare 130
            return _interrupted()
        return (returned if isinstance(returned, int) else 0), None
    except typer.Exit as exc:  # --version; a report that is its own message (`backup status`)
        return exc.exit_code, None
    except RecoveryError as exc:
        with contextlib.suppress(BrokenPipeError):
            sys.stderr.write(exc.render() + "\n")
        _log.debug("error", kind=type(exc).__name__, what=exc.what)
        return exc.exit_code, error_json(exc)
    except typer.TyperException as exc:  # usage errors: unknown option, missing argument
        show = getattr(exc, "show", None)
        click_ctx = getattr(exc, "ctx", None)
        # typer's parser raises a missing option value without its context.
        helped = f"{click_ctx.command_path if click_ctx else _named_command(argv, prog_name)}" \
            " --help"
        state = "unchanged: nothing was done"
        if show is not None:
            with contextlib.suppress(BrokenPipeError):
                show()
                # The same closing lines as every other refusal, for the tired reader.
                sys.stderr.write(f"state: {state}\nnext: {helped}\n")
        code = int(getattr(exc, "exit_code", 2))
        return code, {"event": "error", "error": type(exc).__name__, "exit_code": code,
                      "summary": exc.format_message(), "state": state, "next": [helped]}
    except (KeyboardInterrupt, typer.Abort):
        return _interrupted()


def _named_command(argv: list[str], prog_name: str) -> str:
    """The deepest command the words of `argv` name, e.g. `ocp-recovery backup take` for
    `backup /home/core/backup --keep` (the backup group takes a directory as `take`)."""
    from typer.main import get_command

    from toolbox.commands.app import build_app
    from toolbox.commands.backup import TAKE

    command: Any = get_command(build_app(prog_name, argv))
    path = [prog_name]
    for word in argv:
        subcommands = getattr(command, "commands", None)
        if subcommands is None or word.startswith("-"):
            continue
        found = subcommands.get(word)
        if found is None and TAKE in subcommands:
            found, word = subcommands[TAKE], TAKE
        if found is None:
            if len(path) == 1:
                continue  # a global option's value (`--host-root /host restore …`)
            break
        command = found
        path.append(word)
    return " ".join(path)


def _interrupted() -> tuple[int, dict[str, Any]]:
    """Ctrl-C outside a journaled step (a step's is rendered by the runner, with its
    journal's state): checks, a backup or upload (which remove what they wrote), a signer."""
    from toolbox.commands.common import error_json

    interrupted = Interrupted(
        "interrupted (Ctrl-C)", state="no journaled step was running; a backup, upload or "
        "fetch in progress removes what it wrote (an unfinished upload has no manifest: it "
        "is never listed or restored)", next_step="`ocp-recovery status` shows whether an "
        "operation is part-way; otherwise run the same command again")
    with contextlib.suppress(BrokenPipeError):
        sys.stderr.write(interrupted.render() + "\n")
    return interrupted.exit_code, error_json(interrupted)
