"""The log stream: what an SRE or a log collector reads, and what it must never hold."""

import json

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
