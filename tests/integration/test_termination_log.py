"""The backup's outcome in the file OCP_RECOVERY_TERMINATION_LOG names (the CronJob: the
pod's /dev/termination-log, which `oc get pod -o yaml` shows after the logs are gone), from
the installed command run as a process on a 1-master sandbox: the JSON summary with its exit
code on success, on each kind of failure and on SIGTERM, at most 4096 bytes and still JSON
however long the message; a file it cannot write changes nothing but a warning."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import one_master
from tests.e2e.helpers import BIN, REPO, command
from toolbox.host.backups import find_backup_sets
from toolbox.sandbox.cluster import Sandbox

LIMIT = 4096  # what the kubelet keeps of a termination message
CLOSED_PORT = "https://127.0.0.1:1"  # nothing listens there in the test's network namespace


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with one_master(tmp_path_factory.mktemp("termlog-sandbox"), keys=50,
                    prefix="termlog") as sandbox:
        yield sandbox


def as_the_cronjob(message: Path) -> dict[str, str]:
    return {"OCP_RECOVERY_LOG_FORMAT": "json", "OCP_RECOVERY_TERMINATION_LOG": str(message)}


def termination_message(path: Path) -> dict[str, Any]:
    """The file as the kubelet reads it: at most 4096 bytes, which must be one JSON object."""
    raw = path.read_bytes()
    assert len(raw) <= LIMIT, len(raw)
    message: dict[str, Any] = json.loads(raw)
    return message


def last_json_line(stdout: str) -> dict[str, Any]:
    last: dict[str, Any] = json.loads(stdout.splitlines()[-1])
    return last


def test_a_backup_leaves_its_summary_with_exit_code_0(sandbox: Sandbox, tmp_path: Path) -> None:
    message = tmp_path / "termination-log"
    done = command(sandbox, 0, "backup", "/home/core/termlog-ok",
                   extra_env=as_the_cronjob(message))
    assert done.returncode == 0, done.stderr
    [made] = find_backup_sets(sandbox.root(0) / "var/home/core/termlog-ok")
    assert made.snapshot is not None
    outcome = termination_message(message)
    assert outcome == {**last_json_line(done.stdout), "exit_code": 0}
    assert outcome["event"] == "backup.summary"
    assert Path(outcome["snapshot"]).name == made.snapshot.name
    assert made.timestamp in outcome["summary"]


def test_etcd_unreachable_leaves_exit_code_5_and_the_error(sandbox: Sandbox,
                                                           tmp_path: Path) -> None:
    message = tmp_path / "termination-log"
    done = command(sandbox, 0, "backup", "/home/core/termlog-noetcd", "--endpoints",
                   CLOSED_PORT, extra_env=as_the_cronjob(message))
    assert done.returncode == 5, done.stderr
    outcome = termination_message(message)
    assert outcome == last_json_line(done.stdout)
    assert (outcome["exit_code"], outcome["error"]) == (5, "EtcdUnavailable")
    assert "127.0.0.1:1" in outcome["summary"] and outcome["next"]


def test_a_message_longer_than_4096_bytes_is_shortened_and_stays_json(
        sandbox: Sandbox, tmp_path: Path) -> None:
    message = tmp_path / "termination-log"
    endpoint = "ftp://" + "x" * 10_000  # the error repeats it: a 10 kB summary
    done = command(sandbox, 0, "backup", "/home/core/termlog-long", "--endpoints", endpoint,
                   extra_env=as_the_cronjob(message))
    assert done.returncode == 3, done.stderr
    full = last_json_line(done.stdout)
    assert len(json.dumps(full)) > LIMIT
    outcome = termination_message(message)
    assert (outcome["exit_code"], outcome["error"]) == (3, "InvalidInput")
    assert outcome["truncated"] == ["summary"]
    assert outcome["summary"].endswith("...")
    assert full["summary"].startswith(outcome["summary"].removesuffix("..."))
    assert (outcome["state"], outcome["next"]) == (full["state"], full["next"])
    assert len(json.dumps(outcome)) > LIMIT - 100  # shortened, not emptied


def test_a_usage_error_leaves_exit_code_2_and_what_was_wrong(sandbox: Sandbox,
                                                            tmp_path: Path) -> None:
    message = tmp_path / "termination-log"
    done = command(sandbox, 0, "backup", "/home/core/termlog-usage", "--no-such-option",
                   extra_env=as_the_cronjob(message))
    assert done.returncode == 2, done.stderr
    outcome = termination_message(message)
    assert outcome["exit_code"] == 2 and "--no-such-option" in outcome["summary"]


# Under load the Ctrl-C case once ended as exit 5: gRPC dropped the KeyboardInterrupt and
# the dial failed at its deadline (toolbox.interruption now raises what was dropped).
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_signal_leaves_exit_code_130(sandbox: Sandbox, tmp_path: Path,
                                       signum: signal.Signals) -> None:
    """SIGTERM (the Job's activeDeadlineSeconds, a pod deleted) or Ctrl-C while the backup
    waits for an etcd that accepted the connection and never answers."""
    message = tmp_path / "termination-log"
    with socket.create_server(("127.0.0.1", 0)) as silent_etcd:
        silent_etcd.settimeout(60)
        env = {**sandbox.env_vars(0, dict(os.environ)), **as_the_cronjob(message)}
        process = subprocess.Popen(
            [str(BIN / "ocp-recovery"), "backup", "/home/core/termlog-term", "--endpoints",
             f"https://127.0.0.1:{silent_etcd.getsockname()[1]}", "--dial-timeout", "120"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        try:
            connection, _ = silent_etcd.accept()  # it is dialling: past start-up
            with connection:
                process.send_signal(signum)
                _, stderr = process.communicate(timeout=60)
        finally:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    outcome = termination_message(message)
    assert (outcome["exit_code"], outcome["error"]) == (130, "Interrupted")
    assert outcome["summary"] in stderr


def test_an_unwritable_termination_log_is_one_warning_not_another_exit_code(
        sandbox: Sandbox, tmp_path: Path) -> None:
    message = tmp_path / "no-such-directory" / "termination-log"
    done = command(sandbox, 0, "backup", "/home/core/termlog-unwritable", "--endpoints",
                   CLOSED_PORT, extra_env=as_the_cronjob(message))
    assert done.returncode == 5, done.stderr
    [warning] = [json.loads(line) for line in done.stderr.splitlines()
                 if "termination_log" in line]
    assert (warning["event"], warning["level"]) == ("termination_log.unwritable", "warning")
    assert warning["path"] == str(message) and not message.exists()
