"""`objects restore` when etcd stops answering mid-restore, when the run is SIGKILLed at each
step and inside each, and when objects change under it: `status` shows the run in flight,
`resume` finishes it with the backup's exact bytes, `rollback` gives back the live etcd as it
was before the run; no key ever holds anything but what it held or the backup's bytes; a key
someone else wrote meanwhile (another name, the same name, or a restored object edited since)
is left alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import assert_host_unchanged
from tests.e2e.helpers import BIN, command
from tests.reliability.test_faults_backup import etcd_pid
from tests.reliability.test_hostile_objects import (
    BACKUP,
    api_sandbox,
    apply,
    cli,
    configmap,
    etcd_dump,
    kubectl,
    namespace,
)
from toolbox.journal import IN_FLIGHT, Journal, execute
from toolbox.objects.backup import Selection
from toolbox.procedures import objects_restore
from toolbox.sandbox.cluster import Sandbox
from toolbox.sandbox.drill_report import master_context

pytestmark = [pytest.mark.fault("objects"), pytest.mark.timeout(300)]

# What a restore and its rollback may change on the host: the live data dir (the etcd
# comparisons cover it) and the journal.
IGNORED = ("var/lib/etcd", "var/lib/ocp-recovery")

MANY = "many"            # enough ConfigMaps that a restore of them takes a while
MANY_COUNT = 200
GONE, EDITED = ("cm-0", "cm-1", "cm-2"), ("cm-3", "cm-4")  # of each small namespace
SMALL_COUNT = 6
RESTORE = "toolbox.procedures.objects_restore"
# Where a run is SIGKILLed, with --replace so that it has both steps: kill_after, kill_when,
# and the step as `status` then shows it.
KILLS = [
    pytest.param(None, f"{RESTORE}:_values", "stopped  create-objects",
                 id="create-objects-starting"),
    pytest.param(None, f"{RESTORE}:_create", "stopped  create-objects",
                 id="create-objects-written"),
    pytest.param("create-objects", None, "done     create-objects", id="after-create-objects"),
    pytest.param(None, f"{RESTORE}:_replace", "stopped  replace-objects",
                 id="replace-objects-written"),
    pytest.param("replace-objects", None, "done     replace-objects",
                 id="after-replace-objects"),
]
KILL_IDS = [str(p.id) for p in KILLS]


def key(ns: str, name: str) -> bytes:
    return f"/kubernetes.io/configmaps/{ns}/{name}".encode()


def small_namespaces() -> list[str]:
    return [f"{kill}-{outcome}" for kill in KILL_IDS for outcome in ("resume", "rollback")] \
        + ["edited", "changed", "raced"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Backed up: namespace MANY with MANY_COUNT ConfigMaps, and each small namespace with
    SMALL_COUNT. Then, live, in each small namespace: GONE deleted and EDITED changed.
    Also what etcd held at the backup: the backup's bytes of every key."""
    objects = [namespace(MANY)] + [configmap(MANY, f"cm-{i:03d}", {"i": str(i)})
                                   for i in range(MANY_COUNT)]
    for ns in small_namespaces():
        objects += [namespace(ns)] + [configmap(ns, f"cm-{i}", {"i": str(i)})
                                      for i in range(SMALL_COUNT)]
    sandbox = api_sandbox(tmp_path_factory.mktemp("objects-faults") / "sb", *objects)
    try:
        at_backup = etcd_dump(sandbox)
        apply(sandbox, *[configmap(ns, name, {"i": "changed after the backup"})
                         for ns in small_namespaces() for name in EDITED])
        for ns in small_namespaces():
            delete_configmaps(sandbox, ns, *GONE)
        yield {"sandbox": sandbox, "at_backup": at_backup}
    finally:
        sandbox.down()


@pytest.fixture(autouse=True)
def nothing_left_in_flight(cluster: dict[str, Any]) -> Iterator[None]:
    """A test that failed part-way must not fail the next ones with `in flight`."""
    yield
    sandbox = cluster["sandbox"]
    journal = Journal.load(sandbox.root(0) / "var/lib/ocp-recovery")
    if journal is not None and journal.status in IN_FLIGHT:
        command(sandbox, 0, "rollback", "--yes")


def delete_configmaps(sandbox: Sandbox, ns: str, *names: str) -> None:
    """Deleted through the API; every ConfigMap of `ns` without names (one request)."""
    if names:
        kubectl(sandbox, "delete", "configmap", "-n", ns, *names)
    else:
        kubectl(sandbox, "delete", "--raw", f"/api/v1/namespaces/{ns}/configmaps")


def live(sandbox: Sandbox, keys: list[bytes]) -> dict[bytes, bytes | None]:
    with sandbox.client(0, timeout=10) as client:
        found = {k: client.get(k) for k in keys}
    return {k: v.value if v else None for k, v in found.items()}


def assert_as_backed_up(cluster: dict[str, Any], keys: list[bytes]) -> None:
    """Each key holds the backup's bytes: as etcd held them then, and as `snapshot get -o raw`
    shows them (one key, through the product's own reader)."""
    sandbox, at_backup = cluster["sandbox"], cluster["at_backup"]
    now = live(sandbox, keys)
    wrong = [k for k in keys if now[k] != at_backup[k]]
    assert not wrong, f"not as in the backup: {wrong[:10]}"
    raw = subprocess.run([str(BIN / "ocp-recovery"), "-o", "raw", "snapshot", "get", BACKUP,
                          keys[-1].decode()],
                         env=sandbox.env_vars(0, dict(os.environ)), capture_output=True,
                         timeout=60)
    assert raw.returncode == 0 and raw.stdout == now[keys[-1]], raw.stderr


def assert_nothing_half_written(cluster: dict[str, Any], before: dict[bytes, bytes]) -> None:
    """Every key holds what it held before the run, or the backup's bytes: nothing else."""
    now = etcd_dump(cluster["sandbox"])
    odd = [k for k in before.keys() | now.keys()
           if now.get(k) != before.get(k) and now.get(k) != cluster["at_backup"].get(k)]
    assert not odd, f"neither as before nor as in the backup: {odd[:10]}"


def status(sandbox: Sandbox) -> str:
    done = command(sandbox, 0, "status")
    assert done.returncode == 0, done.stderr
    return done.stdout


def result_of(outcome_stdout: str) -> dict[str, Any]:
    [result] = [json.loads(line) for line in outcome_stdout.splitlines()
                if line.startswith("{") and '"objects.restored"' in line]
    return dict(result)


# ---- etcd stops answering mid-restore -------------------------------------------------------

def frozen_mid_restore(cluster: dict[str, Any]) -> dict[bytes, bytes]:
    """Every ConfigMap of MANY deleted, then restored; etcd frozen (SIGSTOP) as soon as the
    first is back, thawed once the run has failed. The run fails cleanly, in flight, having
    written nothing but the backup's bytes. What etcd held before the run."""
    sandbox = cluster["sandbox"]
    delete_configmaps(sandbox, MANY)
    before = etcd_dump(sandbox)
    pid = etcd_pid(sandbox, 0)
    first = key(MANY, "cm-000")

    def freeze_after_the_first_write() -> None:
        with sandbox.client(0, timeout=10) as client:
            deadline = time.monotonic() + 60
            while client.get(first) is None and time.monotonic() < deadline:
                time.sleep(0.001)
        os.kill(pid, signal.SIGSTOP)

    freezer = threading.Thread(target=freeze_after_the_first_write)
    freezer.start()
    try:
        done = command(sandbox, 0, "--dial-timeout", "1", "--log-format", "json", "objects",
                       "restore", BACKUP, "--namespace", MANY, "--yes")
    finally:
        freezer.join()
        os.kill(pid, signal.SIGCONT)
    assert done.returncode == 11, done.stdout + done.stderr
    assert f"write of /kubernetes.io/configmaps/{MANY}/" in done.stderr
    assert "no answer before the deadline" in done.stderr
    assert "`ocp-recovery resume` runs `create-objects` again" in done.stderr
    shown = status(sandbox)
    assert "failed" in shown and "stopped  create-objects" in shown, shown
    back = [v for v in live(sandbox, [key(MANY, f"cm-{i:03d}") for i in range(MANY_COUNT)]
                            ).values() if v is not None]
    assert 0 < len(back) < MANY_COUNT, "stopped part-way"
    assert_nothing_half_written(cluster, before)
    return before


def test_etcd_frozen_mid_restore_then_resume(run_cli, cluster: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    """resume writes the rest; a ConfigMap someone created meanwhile under one of the names
    is reported, not overwritten."""
    sandbox = cluster["sandbox"]
    frozen_mid_restore(cluster)
    apply(sandbox, configmap(MANY, "cm-199", {"i": "made meanwhile"}))
    made_meanwhile = live(sandbox, [key(MANY, "cm-199")])[key(MANY, "cm-199")]
    resumed = cli(run_cli, sandbox, "--json", "resume")
    result = result_of(resumed.stdout)
    assert result["conflicts"] == [key(MANY, "cm-199").decode()], result
    assert result["created"] == MANY_COUNT - 1, result  # the failed run's writes included
    assert_as_backed_up(cluster, [key(MANY, f"cm-{i:03d}") for i in range(MANY_COUNT - 1)])
    assert live(sandbox, [key(MANY, "cm-199")])[key(MANY, "cm-199")] == made_meanwhile
    assert "done" in status(sandbox)


def test_etcd_frozen_mid_restore_then_rollback(run_cli, cluster: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    """rollback removes exactly what the run created: not a ConfigMap made meanwhile under
    another name, nor one made under a name it was to restore."""
    sandbox = cluster["sandbox"]
    with assert_host_unchanged(sandbox.root(0), IGNORED):
        before = frozen_mid_restore(cluster)
        apply(sandbox, configmap(MANY, "made-meanwhile"), configmap(MANY, "cm-199"))
        meanwhile = live(sandbox, [key(MANY, "made-meanwhile"), key(MANY, "cm-199")])
        rolled = cli(run_cli, sandbox, "rollback", "--yes")
    after = etcd_dump(sandbox)
    assert {k: v for k, v in after.items() if k not in meanwhile} == before
    assert {k: after.get(k) for k in meanwhile} == meanwhile
    assert key(MANY, "cm-199").decode() in rolled.stderr, "it says what it kept"
    assert "rolled-back" in status(sandbox)


# ---- a run SIGKILLed at each step and inside each ------------------------------------------

def killed(cluster: dict[str, Any], ns: str, kill_after: str | None, kill_when: str | None,
           shown_step: str) -> dict[bytes, bytes]:
    """`objects restore --replace` of `ns` SIGKILLed there: `status` shows it stopped at
    `shown_step`, nothing is half-written. What etcd held before the run."""
    sandbox = cluster["sandbox"]
    before = etcd_dump(sandbox)
    done = command(sandbox, 0, "objects", "restore", BACKUP, "--namespace", ns, "--replace",
                   "--yes", kill_after=kill_after, kill_when=kill_when)
    assert done.returncode == -9, done.stdout + done.stderr
    shown = status(sandbox)
    assert "stopped part-way" in shown and shown_step in shown, shown
    assert_nothing_half_written(cluster, before)
    return before


@pytest.mark.parametrize(("kill_after", "kill_when", "shown_step"), KILLS)
def test_resume_after_a_kill(run_cli, cluster: dict[str, Any], request: pytest.FixtureRequest,  # type: ignore[no-untyped-def]
                             kill_after: str | None, kill_when: str | None,
                             shown_step: str) -> None:
    ns = f"{request.node.callspec.id}-resume"
    with assert_host_unchanged(cluster["sandbox"].root(0), IGNORED):
        killed(cluster, ns, kill_after, kill_when, shown_step)
        result = result_of(cli(run_cli, cluster["sandbox"], "--json", "resume").stdout)
    assert_as_backed_up(cluster, [key(ns, f"cm-{i}") for i in range(SMALL_COUNT)])
    # The whole operation's result, the killed run's writes included.
    assert (result["created"], result["replaced"]) == (len(GONE), len(EDITED)), result
    assert result["conflicts"] == [], result


@pytest.mark.parametrize(("kill_after", "kill_when", "shown_step"), KILLS)
def test_rollback_after_a_kill(run_cli, cluster: dict[str, Any], request: pytest.FixtureRequest,  # type: ignore[no-untyped-def]
                               kill_after: str | None, kill_when: str | None,
                               shown_step: str) -> None:
    ns = f"{request.node.callspec.id}-rollback"
    with assert_host_unchanged(cluster["sandbox"].root(0), IGNORED):
        before = killed(cluster, ns, kill_after, kill_when, shown_step)
        cli(run_cli, cluster["sandbox"], "rollback", "--yes")
    assert etcd_dump(cluster["sandbox"]) == before


@pytest.mark.parametrize("outcome", ["resume", "rollback"])
def test_killed_in_the_middle_of_creating(run_cli, cluster: dict[str, Any], outcome: str) -> None:  # type: ignore[no-untyped-def]
    """SIGKILLed while it writes MANY_COUNT keys: 50 ms into the step, before the first
    write or among them (0.3 s was once after the last of them, on a quiet machine)."""
    sandbox = cluster["sandbox"]
    delete_configmaps(sandbox, MANY)
    before = etcd_dump(sandbox)
    with assert_host_unchanged(sandbox.root(0), IGNORED):
        done = command(sandbox, 0, "objects", "restore", BACKUP, "--namespace", MANY, "--yes",
                       kill_after="create-objects@0.05")
        assert done.returncode == -9, done.stdout + done.stderr
        shown = status(sandbox)
        assert "stopped part-way" in shown, shown
        assert "stopped  create-objects" in shown or "done     create-objects" in shown, shown
        assert_nothing_half_written(cluster, before)
        finished = cli(run_cli, sandbox, "--json",
                       *(["rollback", "--yes"] if outcome == "rollback" else ["resume"]))
    if outcome == "resume":
        assert result_of(finished.stdout)["created"] == MANY_COUNT, finished.stdout
        assert_as_backed_up(cluster, [key(MANY, f"cm-{i:03d}") for i in range(MANY_COUNT)])
    else:
        assert etcd_dump(sandbox) == before


# ---- objects that change under the restore --------------------------------------------------

def test_rollback_leaves_a_restored_object_edited_since(run_cli, cluster: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    sandbox = cluster["sandbox"]
    cli(run_cli, sandbox, "objects", "restore", BACKUP, "--namespace", "edited", "--yes")
    assert_as_backed_up(cluster, [key("edited", name) for name in GONE])
    kubectl(sandbox, "patch", "configmap", "cm-0", "-n", "edited", "-p",
            '{"data": {"i": "edited after the restore"}}')
    edited = live(sandbox, [key("edited", "cm-0")])
    rolled = cli(run_cli, sandbox, "rollback", "--yes")
    assert live(sandbox, [key("edited", "cm-0")]) == edited, "the edit stays"
    assert set(live(sandbox, [key("edited", n) for n in GONE[1:]]).values()) == {None}
    assert "/kubernetes.io/configmaps/edited/cm-0" in rolled.stderr, "it says what it kept"


def test_a_changed_object_is_replaced_only_with_replace(run_cli, cluster: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    sandbox = cluster["sandbox"]
    changed = [key("changed", name) for name in EDITED]
    edited = live(sandbox, changed)
    left = cli(run_cli, sandbox, "--json", "objects", "restore", BACKUP, "--namespace",
               "changed", "--yes")
    assert result_of(left.stdout)["changed"] == [k.decode() for k in changed]
    assert live(sandbox, changed) == edited, "left alone without --replace"
    replaced = cli(run_cli, sandbox, "--json", "objects", "restore", BACKUP, "--namespace",
                   "changed", "--replace", "--yes")
    assert result_of(replaced.stdout)["replaced"] == len(EDITED)
    assert_as_backed_up(cluster, [key("changed", f"cm-{i}") for i in range(SMALL_COUNT)])


def test_a_change_between_plan_and_run_is_a_conflict_not_overwritten(
        cluster: dict[str, Any]) -> None:
    sandbox = cluster["sandbox"]
    ctx = master_context(sandbox, 0, os.environ)
    plan = objects_restore.plan(ctx, objects_restore.RestoreRequest(
        BACKUP, Selection(namespace="raced"), replace=True))
    raced = [key("raced", name) for name in EDITED]
    assert {r.key for r in plan.replace} == {k.decode() for k in raced}
    kubectl(sandbox, "patch", "configmap", EDITED[0], "-n", "raced", "-p",
            '{"data": {"i": "changed again after the plan"}}')
    again = live(sandbox, raced[:1])
    result = execute(ctx, objects_restore.PROCEDURE, plan)
    assert result.conflicts == [raced[0].decode()]
    assert result.replaced == len(EDITED) - 1
    assert live(sandbox, raced[:1]) == again, "not overwritten"
    assert_as_backed_up(cluster, raced[1:] + [key("raced", name) for name in GONE])
    assert "changed while this ran, not written" in "\n".join(result.report().details)
