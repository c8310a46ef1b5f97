"""The log stream: what an SRE or a log collector reads, and what it must never hold."""

import json
import subprocess
import sys

import pytest

from toolbox import log

PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQ\n-----END PRIVATE KEY-----"


@pytest.fixture(autouse=True)
def console_again():  # type: ignore[no-untyped-def]
    yield
    log.configure("console")


def test_json_lines_carry_event_level_timestamp_and_fields(capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    log.configure("json")
    log.get("t").info("backup.done", seconds=1.5, path="/home/core/backup")
    [line] = capsys.readouterr().err.splitlines()
    record = json.loads(line)
    assert record["event"] == "backup.done" and record["level"] == "info"
    assert record["seconds"] == 1.5 and record["path"] == "/home/core/backup"
    assert record["timestamp"].endswith("Z")


def test_debug_only_when_verbose(capsys: pytest.CaptureFixture[str]) -> None:
    log.configure("console")
    log.get("t").debug("exec.start", argv=["true"])
    assert capsys.readouterr().err == ""
    log.configure("console", verbose=True)
    log.get("t").debug("exec.start", argv=["true"])
    err = capsys.readouterr().err
    assert "[debug    ] exec.start" in err and "argv=['true']" in err


def test_keys_and_tokens_never_reach_the_log(capsys: pytest.CaptureFixture[str]) -> None:
    for fmt in ("json", "console"):
        log.configure(fmt)
        log.get("t").warning("x", signer_token="s3cret", note=f"got {PEM} back",
                             private_key="k")
        err = capsys.readouterr().err
        assert "s3cret" not in err and "MIIEvQ" not in err and "=k" not in err
        assert "<redacted PEM>" in err


def test_bound_fields_are_on_the_lines_inside_the_block_only(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The journal binds operation and step: every line inside says which, none after; a
    step's block nested in the operation's gives the operation's fields back on exit."""
    log.configure("json")
    logger = log.get("t")
    with log.bound(operation="restore-1", step="stop-static-pods"):
        logger.info("a")
        with log.bound(step="restore-data-dir"):
            logger.info("b")
        logger.info("c")
    logger.info("d")
    records = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(r["event"], r.get("operation"), r.get("step")) for r in records] == [
        ("a", "restore-1", "stop-static-pods"), ("b", "restore-1", "restore-data-dir"),
        ("c", "restore-1", "stop-static-pods"), ("d", None, None)]


def _imported(code: str) -> set[str]:
    """The modules a fresh interpreter imports to run `code` (`-X importtime` lists each)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code],
                          capture_output=True, text=True, check=True)
    return {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
            if line.startswith("import time:")}


def test_structlog_is_imported_at_the_first_line_written_not_before() -> None:
    """`--version` and every command start without structlog's 0.18 s: `get`, `configure`
    and a debug line not shown import nothing; the first line written does."""
    quiet = _imported("from toolbox import log; l = log.get('x'); log.configure('json'); "
                      "l.debug('exec.start')")
    assert "structlog" not in quiet and "rich" not in quiet
    assert "structlog" in _imported("from toolbox import log; log.configure('json'); "
                                    "log.get('x').info('backup.done')")


def test_a_backup_without_a_tty_never_imports_rich() -> None:
    """The CronJob: JSON lines, no bar, and not rich's import either (structlog would load
    it for tracebacks)."""
    cronjob = ("import sys; from toolbox import log\n"
               "log.configure('json'); log.get('x').info('backup.start')\n"
               "with log.progress('snapshot', 10, draw=False) as update: assert update is None\n"
               "log.get('x').info('backup.done')\n"
               "print(sorted({m.split('.')[0] for m in sys.modules} & {'structlog', 'rich'}))")
    done = subprocess.run([sys.executable, "-c", cronjob], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["['structlog']"]


def test_progress_bar_shows_label_share_and_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    with log.progress("snapshot", 1024 << 20) as update:
        assert update is not None
        update(512 << 20, 1024 << 20)
    err = capsys.readouterr().err
    assert err.startswith("snapshot ") and " 50% 0.5/1.0 GiB" in err
