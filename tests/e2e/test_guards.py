"""What a tired operator relies on, typed as they type it: a healthy cluster is not restored
by accident, a restore piped to `tee` asks or refuses, the host lock covers a whole operation
with its wait, Ctrl-C and `status` tell the truth, and a run refused at its first step leaves
nothing in flight."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import assert_host_unchanged
from tests.e2e.helpers import (
    BIN,
    backed_up_sandbox,
    cluster_of,
    command,
    keys_in,
    member_names,
)
from toolbox.errors import EtcdUnavailable
from toolbox.sandbox.cluster import Sandbox

DATA = ("var/lib/etcd",)            # etcd writes its data dir all the time
MASTERS = [f"etcd-member-master-{i}" for i in range(3)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with backed_up_sandbox(tmp_path_factory.mktemp("guards"), masters=3, keys=50) as sandbox:
        yield sandbox


def leaders(sandbox: Sandbox) -> set[int]:
    """The leader each master follows: two values mean a split cluster."""
    seen = set()
    for index in range(3):
        with sandbox.client(index) as client:
            seen.add(client.status().leader)
    return seen


def status_of(sandbox: Sandbox, index: int = 0) -> str:
    done = command(sandbox, index, "status")
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("args", [
    ["--yes"],
    ["--yes", "--rewind-healthy-cluster"],  # not even on purpose: the two others serve on
    ["etcd-snapshot-restore.sh"],
])
def test_a_healthy_member_is_not_restored_alone(cluster: Sandbox, args: list[str]) -> None:
    alone = cluster_of(cluster, [0])
    if args[0].endswith(".sh"):
        program, argv = args[0], ["/home/core/backup", alone]
    else:
        program, argv = "ocp-recovery", ["restore", "/home/core/backup", "--initial-cluster",
                                         alone, *args]
    with assert_host_unchanged(cluster.root(0), DATA):
        done = command(cluster, 0, *argv, program=program)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "healthy member (etcd-member-master-0)" in done.stderr
    assert "3 of 3 members healthy" in done.stderr and "would split" in done.stderr
    assert "list all 3 masters in --initial-cluster" in done.stderr
    assert member_names(cluster) == MASTERS and len(leaders(cluster)) == 1


def test_rewinding_every_member_of_a_healthy_cluster_needs_the_flag(cluster: Sandbox) -> None:
    with assert_host_unchanged(cluster.root(0), DATA):
        done = command(cluster, 0, "restore", "/home/core/backup", "--initial-cluster",
                       cluster_of(cluster, [0, 1, 2]), "--yes")
    assert done.returncode == 4, done.stdout + done.stderr
    assert "takes every object of that cluster back to revision" in done.stderr
    assert "add --rewind-healthy-cluster" in done.stderr


def _restore_all_three(cluster: Sandbox) -> list[str]:
    """Guide 3.3's restore on master-0, with the flag that says so."""
    return [str(BIN / "ocp-recovery"), "restore", "/home/core/backup", "--initial-cluster",
            cluster_of(cluster, [0, 1, 2]), "--rewind-healthy-cluster"]


def test_a_restore_piped_to_tee_asks_on_the_terminal_or_refuses(cluster: Sandbox) -> None:
    env = cluster.env_vars(0, dict(os.environ))
    with assert_host_unchanged(cluster.root(0), DATA):
        # No terminal at all (a script, a CronJob): refused, and told about --yes.
        done = subprocess.run(_restore_all_three(cluster), env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 3, done.stdout + done.stderr
        assert "stdin is not a terminal" in done.stderr and "--yes" in done.stderr
        assert "state: unchanged" in done.stderr

        # `… | tee restore.log` from a terminal: stdout is a pipe, the question is still
        # asked (and lands in the log), and "n" changes nothing.
        terminal, typed = pty.openpty()
        try:
            os.write(terminal, b"n\n")
            done = subprocess.run(_restore_all_three(cluster), env=env, stdin=typed,
                                  capture_output=True, text=True, timeout=120)
        finally:
            os.close(terminal)
            os.close(typed)
        assert "Stop this master's control plane and restore etcd? [y/N]" in done.stdout
        assert "rewinding a healthy cluster" in done.stdout  # the cost, before the question
        # Declined: its own exit code (not Ctrl-C's 130), and no advice to add --yes.
        assert done.returncode == 15 and "nothing was done" in done.stderr, done.stderr
        assert "--yes" not in done.stderr
    assert len(leaders(cluster)) == 1


def _wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_the_lock_covers_the_wait_and_ctrl_c_tells_the_truth(cluster: Sandbox) -> None:
    root = cluster.root(0)
    # If Ctrl-C is not honoured, SIGABRT makes faulthandler print where every thread was.
    env = cluster.env_vars(0, dict(os.environ, PYTHONFAULTHANDLER="1"))
    # Master-0 alone is restored: its new cluster waits for the two others, forever.
    waiting = subprocess.Popen([*_restore_all_three(cluster), "--yes"], env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    rolled_back = False
    try:
        _wait_for(lambda: "running  wait-healthy" in status_of(cluster), 120,
                  "the restore to wait for health")
        status = status_of(cluster)
        assert f"running (pid {waiting.pid})" in status, status

        # A second window, while the first waits: nothing else may start.
        with assert_host_unchanged(root, DATA):
            for verb in ("rollback", "resume"):
                other = command(cluster, 0, verb, *(["--yes"] if verb == "rollback" else []))
                assert other.returncode == 10, other.stdout + other.stderr
                assert f"`restore` (pid {waiting.pid}" in other.stderr
                assert "unchanged by this run" in other.stderr

        # Some seconds into the wait, while health probes run: gRPC dropped a Ctrl-C that
        # came during a probe, and the wait went on for its whole timeout.
        time.sleep(5)
        waiting.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            _out, err = waiting.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            waiting.send_signal(signal.SIGABRT)
            _out, err = waiting.communicate(timeout=30)
            pytest.fail(f"Ctrl-C not honoured in 60 s; where it was:\n{err}")
        assert waiting.returncode == 130, err
        assert "interrupted during `wait-healthy`" in err and "Traceback" not in err
        assert "state: part-way: steps done: stop-static-pods" in err
        assert "ocp-recovery resume` runs `wait-healthy` again" in err

        status = status_of(cluster)
        assert "stopped  wait-healthy" in status and "resume" in status, status
        journal = json.loads((root / "var/lib/ocp-recovery/journal.json").read_text())
        assert Path(journal["plan"]["stash"]).name == journal["id"], "one id: prompt and journal"

        rolled = command(cluster, 0, "rollback", "--yes")
        rolled_back = True
        assert rolled.returncode == 0, rolled.stderr
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
        if not rolled_back:  # a failure above must not leave master-0 restored for the next tests
            command(cluster, 0, "rollback", "--yes")
    cluster.wait_healthy([0, 1, 2], 60)
    # Master-0's etcd, just started again on its old data dir, may drop a first call (seen
    # in full-suite runs as "no answer before the deadline"): whole once it answers.
    _wait_for(lambda: _whole(cluster), 60, "the rolled-back cluster to be whole")
    assert len(keys_in(cluster, 0, "before")) == 50


def test_the_wait_ends_at_the_operators_limit_and_says_how_to_give_it_longer(
        cluster: Sandbox) -> None:
    env = cluster.env_vars(0, dict(os.environ))
    started = time.monotonic()
    # Master-0 alone is restored: its member never serves, so the wait runs out.
    done = subprocess.run([*_restore_all_three(cluster), "--yes", "--health-timeout", "4"],
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=240)
    try:
        assert done.returncode == 9, done.stderr
        # Twice the limit with three members (the others' restores come first), plus steps.
        assert time.monotonic() - started < 120
        assert "waited 8s for the restored member" in done.stderr, done.stderr
        assert "the wait `wait-healthy` ran out" in done.stderr
        assert "with `--health-timeout 1800` on the `resume`; then `ocp-recovery resume` " \
            "runs `wait-healthy` again" in done.stderr, done.stderr
        shown = command(cluster, 0, "status")
        assert "its wait `wait-healthy` ran out" in shown.stdout, shown.stdout
        assert "ran out  wait-healthy" in shown.stdout, shown.stdout
        assert "it waited 8s for the restored member" in shown.stdout, shown.stdout
    finally:
        rolled = command(cluster, 0, "rollback", "--yes")
    assert rolled.returncode == 0, rolled.stderr
    _wait_for(lambda: _whole(cluster), 60, "the rolled-back cluster to be whole")
    assert len(keys_in(cluster, 0, "before")) == 50


def _whole(sandbox: Sandbox) -> bool:
    try:
        return member_names(sandbox) == MASTERS and len(leaders(sandbox)) == 1
    except EtcdUnavailable:
        return False


def test_status_names_the_operation_that_holds_the_lock(cluster: Sandbox) -> None:
    state_dir = cluster.root(0) / "var/lib/ocp-recovery"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from toolbox.host.lock import host_lock\n"
         "with host_lock(Path(sys.argv[1]), 'backup'):\n"
         "    print('held', flush=True); time.sleep(120)", str(state_dir)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        status = status_of(cluster)
    finally:
        holder.kill()
        holder.wait()
    assert f"`backup` (pid {holder.pid}" in status and "holds this host's lock" in status
    assert "last journaled operation: restore" in status and "rolled-back" in status
    assert "running" not in status, status


def test_a_recover_refused_at_its_first_step_leaves_nothing_in_flight(cluster: Sandbox) -> None:
    new = cluster.add_master()
    name = cluster.spec(new).member_name
    # No signer runs on the survivor: the very first request is refused.
    args = ["member", "recover", cluster.spec(0).ip, name, "--yes"]
    env = {"OCP_RECOVERY_SIGNER_TOKEN": "not-the-token"}
    with assert_host_unchanged(cluster.root(new), ("var/lib/ocp-recovery",)):
        done = command(cluster, new, *args, extra_env=env)
    assert done.returncode not in (0, 1, 11), done.stderr
    assert "state: unchanged" in done.stderr, done.stderr
    assert "Errno" not in done.stderr and "urlopen" not in done.stderr
    status = status_of(cluster, new)
    assert "nothing-changed" in status and "nothing to resume" in status, status
    again = command(cluster, new, *args, extra_env=env)
    assert "in flight" not in again.stderr and again.returncode == done.returncode
    assert member_names(cluster) == MASTERS


def test_sandbox_env_of_a_master_that_does_not_exist_is_refused(cluster: Sandbox) -> None:
    done = subprocess.run([str(BIN / "ocp-recovery"), "sandbox", "env", "9", "--dir",
                           str(cluster.dir)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3 and "has no master-9" in done.stderr, done.stderr
    assert "export" not in done.stdout


# ---- changes the cluster's membership: keep last in this module ---------------------------

def test_member_add_without_quorum_is_refused_before_any_change(cluster: Sandbox) -> None:
    removed = command(cluster, 0, "member", "remove", "etcd-member-master-2", "--yes")
    assert removed.returncode == 0, removed.stderr
    cluster.stop_master(1)  # one of the two members left answers: no quorum
    with assert_host_unchanged(cluster.root(2), DATA):
        done = command(cluster, 2, "member", "add", cluster.spec(0).ip,
                       "etcd-member-master-2", "--yes")
    assert done.returncode == 4, done.stdout + done.stderr
    assert "the cluster has no quorum: 1 of 2 members answer, 2 are needed" in done.stderr
    assert "state: unchanged" in done.stderr
