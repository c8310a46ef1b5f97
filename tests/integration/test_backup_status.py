"""`backup status DIR|s3://… --max-age 26h` (issue 17, part 3) as a monitoring check reads it:
exit 0 and one JSON object when the newest verified set is fresh, 17 when it is stale or
there is none (and which), 3 for a wrong directory or limit, 16 when the store refuses; the
newer sets passed over are named. Real backups of a 1-master sandbox, a real Ceph store."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import one_master
from tests.e2e.helpers import command
from toolbox.host.backups import find_backup_sets
from toolbox.procedures.backup_status import parse_max_age
from toolbox.sandbox.cluster import Sandbox
from toolbox.sandbox.objectstore import ObjectStore
from toolbox.store.encryption import new_identity

BUCKET = "backup-status"


@dataclass(frozen=True)
class Master:
    sandbox: Sandbox
    env: dict[str, str]         # the CLI's on master-0

    def host(self, path: str) -> Path:
        return self.sandbox.root(0) / path.lstrip("/")


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Master]:
    with one_master(tmp_path_factory.mktemp("status-sandbox"), keys=100,
                    prefix="status") as sandbox:
        yield Master(sandbox, sandbox.env_vars(0, dict(os.environ)))


def take_backup(run_cli, master: Master, directory: str, *extra: str,  # type: ignore[no-untyped-def]
                env: dict[str, str] | None = None) -> dict[str, Any]:
    done = run_cli(["--log-format", "json", "backup", directory, *extra],
                   env={**master.env, **(env or {})})
    [summary] = [d for d in done.json_lines() if d.get("event") == "backup.summary"]
    return summary


def status(run_cli, master: Master, where: str, *extra: str, exit_code: int = 0,  # type: ignore[no-untyped-def]
           env: dict[str, str] | None = None) -> dict[str, Any]:
    """`backup status --json`: its stdout must be exactly one JSON object."""
    out = run_cli(["backup", "status", where, "--json", *extra],
                  env={**master.env, **(env or {})}, exit_code=exit_code).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def console(run_cli, master: Master, where: str, *extra: str, exit_code: int = 0,  # type: ignore[no-untyped-def]
            env: dict[str, str] | None = None) -> str:
    out: str = run_cli(["--log-format", "console", "backup", "status", where, *extra],
                       env={**master.env, **(env or {})}, exit_code=exit_code).stdout
    return out


# ---- a host directory -----------------------------------------------------------------------

def test_a_fresh_set_is_exit_0_with_its_revision_and_snapshot_size(  # type: ignore[no-untyped-def]
        run_cli, master: Master) -> None:
    directory = "/home/core/status-fresh"
    take_backup(run_cli, master, directory)
    [made] = find_backup_sets(master.host(directory))
    manifest = made.read_manifest()
    assert manifest is not None and made.snapshot is not None
    result = status(run_cli, master, directory)
    assert (result["fresh"], result["reason"]) == (True, None)
    assert result["max_age_seconds"] == 26 * 3600
    assert 0 <= result["age_seconds"] < 600
    newest = result["newest"]
    assert newest["name"] == made.timestamp
    assert newest["revision"] == manifest["etcd"]["revision"] > 0
    assert newest["snapshot_bytes"] == made.snapshot.stat().st_size
    assert (newest["verified"], newest["offsite"]) == (True, False)
    assert newest["location"] == f"{directory}/"
    assert result["skipped"] == {"unverified": [], "incomplete": [], "damaged": []}
    line = console(run_cli, master, directory)
    assert line.startswith(f"fresh: newest verified backup {made.timestamp} is ")
    assert "old (limit 26h), " in line and \
        f"revision {manifest['etcd']['revision']}, NOT off-site" in line
    assert len(line.splitlines()) == 1


def test_a_set_older_than_max_age_is_stale_exit_17(run_cli, master: Master) -> None:  # type: ignore[no-untyped-def]
    directory = "/home/core/status-stale"
    take_backup(run_cli, master, directory)
    time.sleep(2)  # the set is 2 s old: older than 1 s, younger than 1 h
    assert status(run_cli, master, directory, "--max-age", "1h")["fresh"] is True
    result = status(run_cli, master, directory, "--max-age", "1s", exit_code=17)
    assert (result["fresh"], result["reason"]) == (False, "stale")
    assert result["age_seconds"] >= 2 and result["max_age_seconds"] == 1
    assert result["newest"]["name"] == find_backup_sets(master.host(directory))[0].timestamp
    line = console(run_cli, master, directory, "--max-age", "1s", exit_code=17)
    assert line.startswith("STALE: newest verified backup ") and "(limit 1s)" in line
    assert f"run `ocp-recovery backup {directory}` now, and check the CronJob: " \
        "`oc -n ocp-recovery get jobs`" in line


def test_an_empty_directory_is_none_exit_17(run_cli, master: Master) -> None:  # type: ignore[no-untyped-def]
    master.host("/home/core/status-empty").mkdir(parents=True)
    result = status(run_cli, master, "/home/core/status-empty", exit_code=17)
    assert (result["fresh"], result["reason"], result["newest"]) == (False, "none", None)
    assert result["age_seconds"] is None
    assert console(run_cli, master, "/home/core/status-empty", exit_code=17).startswith(
        "STALE: no verified backup in /home/core/status-empty; run `ocp-recovery backup ")


def test_a_missing_directory_is_exit_3_not_none(run_cli, master: Master) -> None:  # type: ignore[no-untyped-def]
    err = run_cli(["backup", "status", "/home/core/no-such-backups"], env=master.env,
                  exit_code=3).stderr
    assert "error: /home/core/no-such-backups is not a directory" in err


@pytest.mark.parametrize("text", ["26", "h", "1h30", "-2h", "0h", "26 hours", "1.5h", "2w",
                                  "h26", "", "\u0662\u0666h"])
def test_a_bad_max_age_is_exit_3_with_an_example(run_cli, master: Master, text: str) -> None:  # type: ignore[no-untyped-def]
    # On a directory that does not exist: the limit is checked first.
    err = run_cli(["backup", "status", "/home/core/status-none", "--max-age", text],
                  env=master.env, exit_code=3).stderr
    assert f"--max-age {text!r} is not a duration above 0" in err and "`--max-age 26h`" in err


@pytest.mark.parametrize(("text", "seconds"), [("26h", 93600), ("90m", 5400), ("2d", 172800),
                                               ("1d12h", 129600), ("30s", 30)])
def test_max_age_takes_days_hours_minutes(text: str, seconds: int) -> None:
    assert parse_max_age(text) == seconds


def test_newer_unverified_and_incomplete_sets_are_skipped_and_counted(  # type: ignore[no-untyped-def]
        run_cli, master: Master) -> None:
    directory = "/home/core/status-skipped"
    take_backup(run_cli, master, directory)
    [verified] = find_backup_sets(master.host(directory))
    assert verified.snapshot is not None and verified.archive is not None
    # Newer by name: a snapshot without its manifest (a 4.3-made set, or one that never
    # verified), and an archive without a snapshot.
    unverified, incomplete = "2099-01-01_000000", "2099-01-02_000000"
    shutil.copy(verified.snapshot, master.host(f"{directory}/snapshot_{unverified}.db"))
    shutil.copy(verified.archive,
                master.host(f"{directory}/static_kuberesources_{incomplete}.tar.gz"))
    result = status(run_cli, master, directory)
    assert (result["fresh"], result["newest"]["name"]) == (True, verified.timestamp)
    assert result["skipped"] == {"unverified": [unverified], "incomplete": [incomplete],
                                 "damaged": []}
    assert "; newer set(s) skipped: 1 unverified (2099-01-01_000000), 1 incomplete " \
        "(2099-01-02_000000)" in console(run_cli, master, directory)
    # Only unverified sets: none, and they are named.
    (master.host(f"{directory}/backup_{verified.timestamp}.json")).unlink()
    result = status(run_cli, master, directory, exit_code=17)
    assert result["reason"] == "none"
    assert result["skipped"]["unverified"] == [verified.timestamp, unverified]


# ---- an object store ------------------------------------------------------------------------

@dataclass(frozen=True)
class Uploaded:
    url: str
    directory: str              # the local set's, on master-0
    store_env: dict[str, str]
    timestamp: str
    revision: int
    snapshot_bytes: int


@pytest.fixture(scope="module")
def uploaded(master: Master, object_store: ObjectStore) -> Uploaded:
    """`backup /home/core/status-offsite --upload s3://backup-status/prod`, made once."""
    object_store.create_bucket(BUCKET)
    _, recipient = new_identity()
    directory, url = "/home/core/status-offsite", f"s3://{BUCKET}/prod"
    store_env = object_store.env()
    done = command(master.sandbox, 0, "backup", directory, "--upload", url, "--recipient",
                   recipient, "--json", extra_env=store_env)
    assert done.returncode == 0, done.stderr
    [made] = find_backup_sets(master.host(directory))
    manifest = made.read_manifest()
    assert manifest is not None and made.snapshot is not None
    return Uploaded(url, directory, store_env, made.timestamp, manifest["etcd"]["revision"],
                    made.snapshot.stat().st_size)


def test_a_fresh_set_on_the_store_is_exit_0_and_off_site(run_cli, master: Master,  # type: ignore[no-untyped-def]
                                                         uploaded: Uploaded) -> None:
    result = status(run_cli, master, uploaded.url, env=uploaded.store_env)
    assert (result["fresh"], result["reason"], result["where"]) == (True, None, uploaded.url)
    newest = result["newest"]
    assert newest["name"] == uploaded.timestamp
    assert newest["revision"] == uploaded.revision
    assert newest["snapshot_bytes"] == uploaded.snapshot_bytes
    assert (newest["verified"], newest["encrypted"], newest["offsite"]) == (True, True, True)
    assert newest["location"] == f"{uploaded.url}/{uploaded.timestamp}"
    assert console(run_cli, master, uploaded.url, env=uploaded.store_env).rstrip().endswith(
        f"revision {uploaded.revision}, off-site")
    # The local set it came from: uploaded, so off-site too.
    assert status(run_cli, master, uploaded.directory)["newest"]["offsite"] is True


def test_a_damaged_newer_set_on_the_store_is_reported_not_passed_over_silently(  # type: ignore[no-untyped-def]
        run_cli, master: Master, uploaded: Uploaded, object_store: ObjectStore) -> None:
    damaged = "2099-01-01_000000"
    object_store.client().put_object(Bucket=BUCKET, Key=f"damaged/{damaged}/backup_{damaged}.json",
                                     Body=b"{not json")
    url = f"s3://{BUCKET}/damaged"
    run_cli(["backup", "push", uploaded.directory, url, "--recipient",
             new_identity()[1]], env={**master.env, **uploaded.store_env})
    result = status(run_cli, master, url, env=uploaded.store_env)
    assert result["newest"]["name"] == uploaded.timestamp and result["fresh"] is True
    [reported] = result["skipped"]["damaged"]
    assert reported["name"] == damaged and "is not one ocp-recovery wrote" in reported["problem"]
    assert f"1 damaged ({damaged})" in console(run_cli, master, url, env=uploaded.store_env)


def test_a_prefix_without_sets_is_none_exit_17(run_cli, master: Master,  # type: ignore[no-untyped-def]
                                               uploaded: Uploaded) -> None:
    result = status(run_cli, master, f"s3://{BUCKET}/nothing-here", exit_code=17,
                    env=uploaded.store_env)
    assert (result["fresh"], result["reason"]) == (False, "none")


def test_wrong_credentials_are_exit_16(run_cli, master: Master, uploaded: Uploaded) -> None:  # type: ignore[no-untyped-def]
    err = run_cli(["backup", "status", uploaded.url],
                  env={**master.env, **uploaded.store_env,
                       "AWS_SECRET_ACCESS_KEY": "not-the-secret"}, exit_code=16).stderr
    assert "error: " in err and "Traceback" not in err
