"""Logging: structlog event lines to stderr, key=value for a person on a TTY, JSON lines
otherwise (the CronJob).

What the operator must read (the summary, the next command) goes to stdout through `say`,
apart from the log stream, so `2>/dev/null` still leaves the answer.

Start-up is part of every command (an SRE's `--version` at 3 a.m., every CronJob run):
`import structlog` costs 0.18 s here, 0.08 s of it rich, which structlog loads for
tracebacks we never print. So nothing heavy is imported at module top: `get` returns a
proxy, structlog is imported (with rich hidden) at the first line that is written, and rich
only when a progress bar is drawn.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import ModuleType

_PEM_BLOCK = re.compile(r"-----BEGIN [A-Z ]+-----.*?-----END [A-Z ]+-----", re.DOTALL)
_SECRET_FIELDS = ("token", "password", "private_key", "key_pem")
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
# One import of structlog or rich at a time: hiding rich from structlog must not make a
# progress bar's import of rich fail in another thread.
_IMPORT_LOCK = threading.Lock()


class _Settings:
    json = False
    colors = False
    threshold = LEVELS["info"]
    applied = False  # structlog is configured with the values above


def configure(log_format: str, verbose: bool = False) -> None:
    """Cheap: structlog takes these at the next line written."""
    _Settings.json = log_format == "json"
    _Settings.colors = not _Settings.json and sys.stderr.isatty()
    _Settings.threshold = LEVELS["debug" if verbose else "info"]
    _Settings.applied = False


def _redact(_logger: Any, _method: str, event: MutableMapping[str, Any]
            ) -> MutableMapping[str, Any]:
    """Logs never carry key material, whoever forgot: PEM blocks and secret fields go."""
    for field, value in event.items():
        if any(s in field for s in _SECRET_FIELDS):
            event[field] = "<redacted>"
        elif isinstance(value, str) and "-----BEGIN" in value:
            event[field] = _PEM_BLOCK.sub("<redacted PEM>", value)
    return event


class _CurrentStderr:
    """structlog's output: whatever sys.stderr is at the call (pytest swaps it; a live
    progress bar puts its proxy there so that lines print above the bar)."""

    _lock = threading.Lock()  # whole lines from concurrent threads

    def msg(self, message: str) -> None:
        with self._lock:
            try:
                sys.stderr.write(message + "\n")
                sys.stderr.flush()
            except BrokenPipeError:
                # The log's reader left (`2>&1 | head`): as for stdout, the work goes on
                # (a backup, a restore mid-way) and what is still logged goes nowhere.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())

    debug = info = warning = error = msg


def _structlog() -> ModuleType:
    """structlog, imported without rich: rich would be 0.08 s of it, for tracebacks we never
    print (an expected failure has none), and a CronJob backup must not load it."""
    with _IMPORT_LOCK:
        if "structlog" not in sys.modules and "rich" not in sys.modules:
            sys.modules["rich"] = None  # type: ignore[assignment]  # makes `import rich` fail
            try:
                import structlog
            finally:
                del sys.modules["rich"]
        import structlog
    return structlog


def _configured() -> ModuleType:
    structlog = _structlog()
    if not _Settings.applied:
        renderer: Callable[..., Any] = (
            structlog.processors.JSONRenderer() if _Settings.json else
            structlog.dev.ConsoleRenderer(colors=_Settings.colors, sort_keys=False,
                                          exception_formatter=structlog.dev.plain_traceback))
        output = _CurrentStderr()
        structlog.configure(
            processors=[structlog.contextvars.merge_contextvars,
                        structlog.processors.add_log_level,
                        structlog.processors.TimeStamper(fmt="iso", utc=True),
                        _redact, renderer],
            wrapper_class=structlog.make_filtering_bound_logger(_Settings.threshold),
            logger_factory=lambda *_: output,
            cache_logger_on_first_use=False)  # configure() may change it all again
        _Settings.applied = True
    return structlog


class Logger:
    """`log.get(__name__).info("backup.done", seconds=1.2)`: an event name and fields."""

    def __init__(self, name: str):
        self.name = name

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        if LEVELS[level] < _Settings.threshold:
            return  # before the import: a debug line not shown costs nothing
        getattr(_configured().get_logger(self.name), level)(event, **fields)

    def debug(self, event: str, **fields: Any) -> None:
        self._emit("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields)


def get(name: str) -> Logger:
    return Logger(name)


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """`fields` on every line logged inside the block by this thread (the journal binds
    operation and step); a nested block adds to the outer one, which is back on exit."""
    contextvars = _structlog().contextvars
    tokens = contextvars.bind_contextvars(**fields)
    try:
        yield
    finally:
        contextvars.reset_contextvars(**tokens)


@contextlib.contextmanager
def progress(label: str, total: int = 0, *, draw: bool = True
             ) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr for long work, fed `update(done_bytes, total_bytes)`
    (total 0: unknown). `draw=False` (no TTY: the CronJob) yields None and imports nothing:
    rich costs 0.07 s to import."""
    if not draw:
        yield None
        return
    with _IMPORT_LOCK:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                  DownloadColumn(binary_units=True), TransferSpeedColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), refresh_per_second=4) as bar:
        task = bar.add_task(label, total=total or None)

        def update(done_bytes: int, total_bytes: int) -> None:
            bar.update(task, completed=done_bytes, total=total_bytes or None)

        yield update


def say(text: str) -> None:
    """A line for the operator on stdout."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # The reader left (`| head`). The work must go on, a restore mid-way above all:
        # what is still said goes nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def say_json(payload: dict[str, Any]) -> None:
    say(json.dumps(payload, sort_keys=True))
