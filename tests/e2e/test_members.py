"""Guide chapter 2 on sandbox masters (etcd 3.4 and 3.5): a failed master's member removed
by exact name, refusals that protect quorum, and the repaired master added back."""

from __future__ import annotations

import os
import re
import threading

import pytest

from tests.conftest import assert_host_unchanged
from tests.e2e.helpers import command, keys_in, member_names
from toolbox.context import Context
from toolbox.errors import CommandFailed
from toolbox.host.runtime import Runtime
from toolbox.journal import DONE, Journal, execute
from toolbox.procedures import member_add
from toolbox.procedures.member_add import AddResult
from toolbox.sandbox import workload
from toolbox.sandbox.cluster import Sandbox
from toolbox.sandbox.drill_report import master_context
from toolbox.waiting import wait_until

MASTERS = [f"etcd-member-master-{i}" for i in range(3)]


def test_replace_one_master_with_valid_certificates(sandbox: Sandbox,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with workload.kv_client(sandbox, 0) as kv:
        written = set(workload.write(kv, "members", 200))
    sandbox.stop_master(2)  # master-2 fails

    refused = command(sandbox, 0, "member", "remove", "etcd-member-master-1")
    assert refused.returncode == 4 and "below quorum" in refused.stderr
    refused = command(sandbox, 0, "member", "remove", "etcd-member-master-0")
    assert refused.returncode == 4 and "this master's own" in refused.stderr
    refused = command(sandbox, 0, "member", "remove", "etcd-member-master-.*")
    assert refused.returncode == 3 and "no etcd member is named" in refused.stderr
    assert member_names(sandbox, 0) == MASTERS

    dry = command(sandbox, 0, "member", "remove", "etcd-member-master-2", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    # It says what is removed and what the cluster keeps.
    [title] = [line for line in dry.stdout.splitlines() if line.startswith("remove etcd member")]
    assert re.fullmatch(
        r"remove etcd member etcd-member-master-2 \([0-9a-f]+, https://127\.0\.0\.13:2380\); "
        r"the cluster keeps 2 member\(s\), 2 healthy \(quorum 2\): etcd-member-master-0, "
        r"etcd-member-master-1; host changes, in order:", title), title
    assert member_names(sandbox, 0) == MASTERS

    removed = command(sandbox, 0, "etcd-member-master-2", program="etcd-member-remove.sh")
    assert removed.returncode == 0, removed.stderr
    assert member_names(sandbox, 0) == MASTERS[:2]
    assert "next: on the new host for etcd-member-master-2: ocp-recovery member add " \
        "127.0.0.11 etcd-member-master-2 (or OCP_RECOVERY_SIGNER_TOKEN=<token> ocp-recovery " \
        "member recover 127.0.0.11 etcd-member-master-2, if it has no etcd certificates)" in \
        removed.stdout.splitlines()

    # master-2 is repaired (its certificates are still valid) and powered on: its old etcd
    # was removed from the cluster, so it cannot serve; add it back.
    sandbox.start_master(2)
    repaired = master_context(sandbox, 2, dict(os.environ))
    wait_until(lambda: _kubelet_answers(repaired), timeout=30, what="master-2's kubelet",
               next_step="read master-2's agent.log")
    with assert_host_unchanged(sandbox.root(2), ("var/lib/etcd", "run/etcd")):
        dry = command(sandbox, 2, "member", "add", "127.0.0.11", "etcd-member-master-2",
                      "--dry-run")
        assert dry.returncode == 0, dry.stderr
    assert "member-add: etcd member add etcd-member-master-2 https://127.0.0.13:2380" in \
        dry.stdout

    # In-process, to have its kubelet start etcd late.
    plan = member_add.PROCEDURE.plan(
        repaired, member_add.AddRequest("127.0.0.11", "etcd-member-master-2"))
    capsys.readouterr()
    with monkeypatch.context() as patch:
        late = _kubelet_late(patch, repaired, 3.0)
        result = execute(repaired, member_add.PROCEDURE, plan)
        late.join()
    # A kubelet that starts etcd late: the wait says what it waits for.
    progress = [line for line in capsys.readouterr().err.splitlines()
                if "wait.progress" in line]
    assert any("member etcd-member-master-2 added; waiting for its etcd to start" in line
               for line in progress), progress
    report = result.report()
    assert report.summary == ("member etcd-member-master-2 is started and healthy; the cluster "
                              "is whole: 3 of 3 members started and healthy")
    assert report.next == [], "the job is done: no 'add the remaining masters'"
    assert report.json()["healthy"] is True
    assert sorted(m["name"] for m in report.fields["members"]) == MASTERS
    assert member_names(sandbox, 2) == MASTERS
    assert keys_in(sandbox, 2, "members") == written
    env = (sandbox.root(2) / "run/etcd/environment").read_text()
    assert "ETCD_INITIAL_CLUSTER_STATE=existing" in env
    [stash] = (sandbox.root(2) / "var/lib/ocp-recovery").glob("member-add-*")
    assert (stash / "var-lib-etcd/member").is_dir(), "the old data dir is kept"

    again = command(sandbox, 2, "member", "add", "127.0.0.11", "etcd-member-master-2")
    assert again.returncode == 4 and "etcd already runs here" in again.stderr

    # The result of the finished run (as `resume` makes it) is what the wait saw: no
    # second health check, which would now wait for the stopped member.
    sandbox.stop_master(2)
    journal = Journal.load(repaired.paths.state_dir)
    assert journal is not None
    assert member_add.PROCEDURE.finish(repaired, plan, journal).report() == report
    sandbox.start_master(2)


def test_a_removal_that_etcd_cannot_commit_is_refused_at_once(sandbox: Sandbox) -> None:
    """Two of three members down: no quorum, so etcd would never commit the removal (the
    command used to retry for 30 s and fail); refused, even forced, with the way out."""
    sandbox.stop_master(1)
    sandbox.stop_master(2)
    try:
        for extra in ([], ["--force"]):
            done = command(sandbox, 0, "member", "remove", "etcd-member-master-2", "--yes",
                           *extra)
            assert done.returncode == 4, done.stderr
            assert "no quorum now: 1 of 3 members answer, 2 are needed" in done.stderr
            assert "restore a survivor" in done.stderr
    finally:
        sandbox.start_master(1)
        sandbox.start_master(2)
        sandbox.wait_healthy([0, 1, 2], 60)
    assert member_names(sandbox, 0) == MASTERS, "nothing was removed"


def test_legacy_member_usage(sandbox: Sandbox) -> None:
    assert command(sandbox, 0, program="etcd-member-remove.sh").returncode == 2
    assert command(sandbox, 0, "1.2.3.4", program="etcd-member-add.sh").returncode == 2


def _kubelet_answers(ctx: Context) -> bool:
    """The sandbox master's node agent, just started, answers (start_master does not wait)."""
    try:
        return Runtime(ctx.executor).kubelet_active()
    except CommandFailed:
        return False


def _kubelet_late(patch: pytest.MonkeyPatch, ctx: Context, seconds: float
                  ) -> threading.Timer:
    """kubelet stops once etcd's pod is gone, and starts `seconds` after etcd's manifest is
    back: the member is added, its etcd not started meanwhile."""
    runtime, mark = Runtime(ctx.executor), Journal.mark
    late = threading.Timer(seconds, runtime.start_kubelet)

    def mark_and_delay(journal: Journal, step: str, state: str) -> None:
        mark(journal, step, state)
        if (step, state) == ("stop-etcd", DONE):
            runtime.stop_kubelet()
        elif (step, state) == ("start-etcd", DONE):
            late.start()

    patch.setattr(Journal, "mark", mark_and_delay)
    return late


def _member(name: str, url: str, healthy: bool) -> dict[str, object]:
    return {"name": name, "id": "1", "peer_urls": [url], "healthy": healthy}


def test_next_names_the_members_not_started_or_not_healthy() -> None:
    result = AddResult("etcd-member-master-3", True, (
        _member("etcd-member-master-0", "https://10.0.0.1:2380", True),
        _member("etcd-member-master-3", "https://10.0.0.4:2380", True),
        _member("", "https://10.0.0.5:2380", False),
        _member("etcd-member-master-1", "https://10.0.0.2:2380", False)), (),
        "ocp-recovery member add 10.0.0.1 etcd-member-<node>")
    report = result.report()
    assert report.summary == "member etcd-member-master-3 is started and healthy"
    assert report.next == [
        "1 member(s) added but not started (https://10.0.0.5:2380): finish their member add "
        "or recover on those masters (`ocp-recovery status` there)",
        "1 member(s) not healthy (etcd-member-master-1): check `crictl ps --name "
        "etcd-member` and its log on those masters"]
    assert report.fields["whole"] is False
