"""Logging: structlog to stderr, console lines on a TTY, JSON lines otherwise.

What the operator must read (the summary, the next command) goes to stdout through `say`,
apart from the log stream, so `2>/dev/null` still leaves the answer.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_PEM_BLOCK = re.compile(r"-----BEGIN [A-Z ]+-----.*?-----END [A-Z ]+-----", re.DOTALL)
_SECRET_FIELDS = ("token", "password", "private_key", "key_pem")


def _redact(_logger: Any, _name: str, event: MutableMapping[str, Any]
            ) -> MutableMapping[str, Any]:
    """Logs never carry key material, whoever forgot: PEM blocks and secret fields go."""
    for field, value in list(event.items()):
        if any(s in field for s in _SECRET_FIELDS):
            event[field] = "<redacted>"
        elif isinstance(value, str) and "-----BEGIN" in value:
            event[field] = _PEM_BLOCK.sub("<redacted PEM>", value)
    return event


class _StderrLogger:
    """Writes to whatever sys.stderr is at the time (not the one seen at configure time)."""

    def __init__(self, *_: Any) -> None:
        pass

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


def configure(log_format: str, verbose: bool = False) -> None:
    renderer: Any
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.DEBUG if verbose else logging.INFO
        ),
        logger_factory=_StderrLogger,
        cache_logger_on_first_use=False,
    )


def get(name: str) -> Any:
    return structlog.get_logger(name)


def say(text: str) -> None:
    """A line for the operator on stdout."""
    print(text, flush=True)


def say_json(payload: dict[str, Any]) -> None:
    print(json.dumps(payload, sort_keys=True), flush=True)
