"""Logging: event lines to stderr, key=value for a person on a TTY, JSON lines otherwise.

What the operator must read (the summary, the next command) goes to stdout through `say`,
apart from the log stream, so `2>/dev/null` still leaves the answer.

Written on the standard library alone: the command starts on every run of an SRE at 3 a.m.
and in every CronJob, and a logging framework (structlog, which pulls in rich) cost 0.2 s
of each start, as much as the rest of a 100 MiB backup's overhead.
"""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import UTC, datetime
from typing import Any

_PEM_BLOCK = re.compile(r"-----BEGIN [A-Z ]+-----.*?-----END [A-Z ]+-----", re.DOTALL)
_SECRET_FIELDS = ("token", "password", "private_key", "key_pem")
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
_COLORS = {"debug": "\x1b[2m", "info": "\x1b[32m", "warning": "\x1b[33m", "error": "\x1b[31m"}


class _Config:
    json = False
    colors = False
    threshold = LEVELS["info"]


def configure(log_format: str, verbose: bool = False) -> None:
    _Config.json = log_format == "json"
    _Config.colors = not _Config.json and sys.stderr.isatty()
    _Config.threshold = LEVELS["debug" if verbose else "info"]


def _redacted(fields: dict[str, Any]) -> dict[str, Any]:
    """Logs never carry key material, whoever forgot: PEM blocks and secret fields go."""
    for field, value in fields.items():
        if any(s in field for s in _SECRET_FIELDS):
            fields[field] = "<redacted>"
        elif isinstance(value, str) and "-----BEGIN" in value:
            fields[field] = _PEM_BLOCK.sub("<redacted PEM>", value)
    return fields


def _console_value(value: Any) -> str:
    return repr(value) if isinstance(value, str) and (not value or " " in value) else str(value)


def _render(level: str, event: str, fields: dict[str, Any]) -> str:
    now = datetime.now(UTC)
    if _Config.json:
        return json.dumps({**fields, "event": event, "level": level,
                           "timestamp": now.isoformat().replace("+00:00", "Z")}, default=repr)
    pairs = " ".join(f"{k}={_console_value(v)}" for k, v in fields.items())
    tag = f"[{level:<9}]"
    if _Config.colors:
        tag = f"{_COLORS[level]}{tag}\x1b[0m"
    return f"{now:%Y-%m-%d %H:%M:%S} {tag} {event:<30} {pairs}".rstrip()


class Logger:
    """`log.get(__name__).info("backup.done", seconds=1.2)`: an event name and fields."""

    def __init__(self, name: str):
        self.name = name

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        if LEVELS[level] < _Config.threshold:
            return
        # Whatever sys.stderr is now (pytest swaps it), not the one seen at import time.
        print(_render(level, event, _redacted(fields)), file=sys.stderr, flush=True)

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
