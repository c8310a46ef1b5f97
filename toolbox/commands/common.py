"""What every command shares: the global options (accepted before or after the command),
one way to show a result, and one way to run a journaled procedure (plan, show and confirm
or --dry-run, run, report)."""

from __future__ import annotations

import enum
import inspect
import json
import os
import sys
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Annotated, Any

import typer

from toolbox import log
from toolbox.errors import InvalidInput, NotConfirmed, RecoveryError
from toolbox.report import Report

if typing.TYPE_CHECKING:
    from toolbox.context import Context
    from toolbox.journal import Confirmation, PlanT, Procedure


class LogFormat(enum.StrEnum):
    console = "console"
    json = "json"


class OutputFormat(enum.StrEnum):
    """-o: console and json for every command; yaml and raw for one object (snapshot get)."""
    console = "console"
    json = "json"
    yaml = "yaml"
    raw = "raw"


OBJECT_FORMATS = (OutputFormat.yaml, OutputFormat.raw)


@dataclass(frozen=True)
class GlobalOptions:
    """The options every command takes, before its name or after it."""

    host_root: Annotated[str | None, typer.Option(
        help="The host's / (env OCP_RECOVERY_HOST_ROOT; default /host when "
        "/host/etc/kubernetes exists, else /).")] = None
    host_exec: Annotated[str | None, typer.Option(
        help="How host commands run: nsenter|chroot|direct (env OCP_RECOVERY_HOST_EXEC).")
    ] = None
    state_dir: Annotated[str | None, typer.Option(
        help="Host path of the journal and lock (env OCP_RECOVERY_STATE_DIR; default "
        "/var/lib/ocp-recovery).")] = None
    endpoints: Annotated[str | None, typer.Option(
        help="etcd endpoints, comma separated; the first healthy one serves (env "
        "ETCDCTL_ENDPOINTS; default https://127.0.0.1:2379).")] = None
    cacert: Annotated[str | None, typer.Option(
        help="etcd CA bundle, a host path (env ETCDCTL_CACERT; default: the newest "
        "kube-apiserver-pod-N's).")] = None
    cert: Annotated[str | None, typer.Option(help="etcd client cert (env ETCDCTL_CERT).")
                    ] = None
    key: Annotated[str | None, typer.Option(help="etcd client key (env ETCDCTL_KEY).")] = None
    dial_timeout: Annotated[float | None, typer.Option(
        help="Seconds to wait for each etcd endpoint (default 5).")] = None
    health_timeout: Annotated[float | None, typer.Option(
        help="Seconds to wait for etcd, the kubelet or an API server to serve after a "
        "change (default 300); a wait for etcd adds 51 s per GiB of its db, and a restore "
        "of several masters waits twice that (the other masters' restores come first). A "
        "slow disk may need more: `resume --health-timeout 1800`.")] = None
    kubeconfig: Annotated[str | None, typer.Option(
        help="Kubeconfig of the Kubernetes API, a host path (env KUBECONFIG; default: the "
        "recovery API server's admin.kubeconfig).")] = None
    log_format: Annotated[LogFormat | None, typer.Option(
        help="Logs on stderr as console lines or JSON lines (env OCP_RECOVERY_LOG_FORMAT; "
        "default console on a TTY, else json).")] = None
    json: Annotated[bool | None, typer.Option(
        "--json", help="The result as one JSON object on stdout (also with --log-format "
        "json or OCP_RECOVERY_LOG_FORMAT=json).")] = None
    output_format: Annotated[OutputFormat | None, typer.Option(
        "--output-format", "-o", help="The result as console lines or JSON: `-o json` is "
        "--json; `snapshot get` also prints yaml or raw (the stored bytes).")] = None
    verbose: Annotated[bool | None, typer.Option("--verbose", "-v", help="Debug logs.")
                       ] = None

    def merged(self, later: GlobalOptions) -> GlobalOptions:
        """These (given before the command) with those given after it, which win."""
        given = {f.name: getattr(later, f.name) for f in fields(later)
                 if getattr(later, f.name) is not None}
        return replace(self, **given)

    def context(self) -> Context:
        from toolbox.context import build_context

        return build_context(
            os.environ, host_root=self.host_root, host_exec=self.host_exec,
            state_dir=self.state_dir, endpoints=self.endpoints, cacert=self.cacert,
            cert=self.cert, key=self.key, log_format=self.log_format,
            dial_timeout=self.dial_timeout, health_timeout=self.health_timeout,
            kubeconfig=self.kubeconfig)

    @property
    def json_result(self) -> bool:
        """--json or -o json; else as the log format asked for by name."""
        if self.json or self.output_format == OutputFormat.json:
            return True
        if self.output_format is not None or self.json is False:
            return False
        from toolbox.context import json_result_asked

        return json_result_asked(self.log_format, os.environ)

    def configure_logging(self) -> None:
        from toolbox.context import log_format_of

        log.configure(log_format_of(self.log_format, os.environ), bool(self.verbose))


GLOBAL_NAMES = tuple(f.name for f in fields(GlobalOptions))
_GLOBAL_HINTS = typing.get_type_hints(GlobalOptions, include_extras=True)


def global_parameters() -> list[inspect.Parameter]:
    return [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                              annotation=_GLOBAL_HINTS[name]) for name in GLOBAL_NAMES]


def command(group: typer.Typer, name: str, *, prints_objects: bool = False
            ) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register `handler(options, **its parameters)` as `NAME` of `group`: its parameters
    are declared by type hints beside it, its docstring is the help, and every global
    option is accepted after the command's name too. `prints_objects`: it takes -o yaml|raw."""

    def register(handler: Callable[..., None]) -> Callable[..., None]:
        hints = typing.get_type_hints(handler, include_extras=True)
        own = [p.replace(annotation=hints[p.name])
               for p in inspect.signature(handler).parameters.values() if p.name != "options"]
        context_parameter = inspect.Parameter("typer_context",
                                              inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                              annotation=typer.Context)

        def invoke(typer_context: typer.Context, **values: Any) -> None:
            after = GlobalOptions(**{n: values.pop(n) for n in GLOBAL_NAMES})
            options = root_options(typer_context).merged(after)
            options.configure_logging()
            if options.output_format in OBJECT_FORMATS and not prints_objects:
                raise InvalidInput(f"-o {options.output_format} prints one object: only "
                                   "`snapshot get` takes it",
                                   next_step=f"use -o json or -o console with {name}")
            try:
                handler(options, **values)
            except RecoveryError as exc:
                if options.json_result:  # a script reading stdout learns of it too
                    log.say_json(error_json(exc))
                raise

        invoke.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [context_parameter, *own, *global_parameters()])
        invoke.__annotations__ = {p.name: p.annotation for p in
                                  invoke.__signature__.parameters.values()}  # type: ignore[attr-defined]
        invoke.__doc__ = handler.__doc__
        invoke.__name__ = handler.__name__
        group.command(name)(invoke)
        return handler

    return register


def root_options(typer_context: typer.Context) -> GlobalOptions:
    found = typer_context.find_root().obj
    return found if isinstance(found, GlobalOptions) else GlobalOptions()


# ---- results ------------------------------------------------------------------------------
def error_json(exc: RecoveryError) -> dict[str, Any]:
    return {"event": "error", "error": type(exc).__name__, "exit_code": exc.exit_code,
            "summary": exc.what, "state": exc.state, "next": [exc.next_step] if exc.next_step
            else []}


class _Shown:
    """The result this run's last `emit` showed, in any output format: `cli.run` writes it
    to the termination log at exit."""

    result: dict[str, Any] | None = None


def shown_result() -> dict[str, Any] | None:
    return _Shown.result


def forget_shown_result() -> None:
    """A new run (the tests run many in one process) has shown nothing yet."""
    _Shown.result = None


TERMINATION_MESSAGE_BYTES = 4096  # what the kubelet keeps of a terminationMessagePath
_SHORTENED = "..."


def termination_message(result: dict[str, Any], exit_code: int,
                        limit: int = TERMINATION_MESSAGE_BYTES) -> str:
    """`result` with the exit code as one JSON line of at most `limit` bytes. While it is
    longer, its longest field is shortened (a string, ending in "...") or dropped (a list or
    object) and named in "truncated": the JSON stays whole; stdout and the log have it all."""
    fitted = {**result, "exit_code": exit_code}
    cut: list[str] = []

    def dumped() -> str:  # ASCII (json escapes the rest): one character is one byte
        return json.dumps({**fitted, **({"truncated": cut} if cut else {})}, sort_keys=True)

    text = dumped()
    while len(text) > limit:
        longest = max(fitted.keys() - {"exit_code"}, key=lambda k: len(json.dumps(fitted[k])))
        value, excess = fitted[longest], len(text) - limit
        keep = len(value) - excess - len(_SHORTENED) if isinstance(value, str) else 0
        if keep > 0:
            fitted[longest] = value[:keep] + _SHORTENED
        else:
            del fitted[longest]
        if longest not in cut:
            cut.append(longest)
        text = dumped()
    return text


def write_termination_log(path: Path, result: dict[str, Any], exit_code: int) -> None:
    """The pod's termination message (OCP_RECOVERY_TERMINATION_LOG). Written in place: the
    kubelet bind-mounts that file, so it cannot be renamed over. Not written: a warning,
    never another exit code."""
    try:
        path.write_text(termination_message(result, exit_code), encoding="utf-8")
    except OSError as exc:
        log.get(__name__).warning("termination_log.unwritable", path=str(path),
                                  error=exc.strerror or str(exc))



def emit(options: GlobalOptions, report: Report, *, seconds: float | None = None) -> None:
    """The result of a command: one JSON object, or its console lines."""
    if seconds is not None:
        report.fields.setdefault("seconds", round(seconds, 2))
    _Shown.result = report.json()
    if options.json_result:
        log.say_json(_Shown.result)
        return
    for line in report.lines():
        log.say(line)


# ---- confirmation and journaled runs -------------------------------------------------------
def confirm(options: GlobalOptions, context: Context, confirmation: Confirmation,
            changes: list[str], warnings: typing.Sequence[str], *, dry_run: bool,
            yes: bool) -> bool:
    """Show every change (--dry-run: and stop, returning False), then ask. Asked only when
    stdin is a terminal (stdout may be `| tee restore.log`); without one and without --yes
    nothing runs. True: go on."""
    if yes and not dry_run:
        return True
    if dry_run and options.json_result:
        emit(options, Report("dry_run", f"{confirmation.title}: dry run, nothing was done",
                             {"changes": changes}, warnings=list(warnings),
                             next=["the same command without --dry-run"]))
        return False
    if not dry_run and not context.stdin_is_terminal:
        raise InvalidInput(
            f"{confirmation.title}: this changes the host and needs a confirmation, but stdin "
            "is not a terminal to ask on", state="unchanged: nothing was done",
            next_step="run it from a terminal, or add --yes to confirm on the command line "
            "(--dry-run shows every change first)")
    log.say(f"{confirmation.title}; host changes, in order:")
    for line in changes:
        log.say(line)
    for warning in warnings:
        log.say(f"warning: {warning}")
    if dry_run:
        log.say("dry run: nothing was done")
        return False
    sys.stdout.write(f"{confirmation.question} [y/N]: ")
    sys.stdout.flush()
    answer = sys.stdin.readline()
    if answer.strip().lower() not in ("y", "yes"):
        raise NotConfirmed(f"{confirmation.title}: not confirmed",
                           state="unchanged: nothing was done",
                           next_step="nothing; run the same command again to be asked again")
    return True


def run_journaled(options: GlobalOptions, context: Context,
                  procedure: Procedure[Any, PlanT, Any], request: object, *, dry_run: bool,
                  yes: bool) -> None:
    """Plan (every check), show and confirm, run the steps, report."""
    from toolbox.journal import execute

    started = time.monotonic()
    plan = procedure.plan(context, request)
    idle = procedure.nothing_to_do(plan)
    if idle is not None:
        emit(options, idle, seconds=time.monotonic() - started)
        return
    if not confirm(options, context, procedure.confirmation(plan),
                   procedure.changes(context, plan), plan.warnings, dry_run=dry_run, yes=yes):
        return
    result = execute(context, procedure, plan)
    emit(options, result.report(), seconds=time.monotonic() - started)


def host_path(path: str, context: Context) -> str:
    from toolbox.host.paths import host_path_argument

    return host_path_argument(path, context.host_root)


DRY_RUN = Annotated[bool, typer.Option("--dry-run", help="Print every host change; change "
                                       "nothing.")]
YES = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
WAIT = Annotated[bool, typer.Option("--wait/--no-wait", help="Wait, as the last step, until "
                                    "the member is healthy.")]
