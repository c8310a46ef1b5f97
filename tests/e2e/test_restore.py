"""Guide 3.2 step 1 and 3.3 on sandbox masters (etcd 3.4 and 3.5): refused inputs leave the
host byte-for-byte unchanged; a quorum restore gives back exactly the backup's data; a
rollback gives back the old cluster."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tarfile
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import assert_host_unchanged
from tests.e2e.helpers import cluster_of, command, keys_in, member_names
from toolbox.errors import EtcdUnavailable, WaitTimedOut
from toolbox.journal import Journal, plan_and_execute
from toolbox.procedures import restore
from toolbox.sandbox import workload
from toolbox.sandbox.cluster import Sandbox
from toolbox.sandbox.drill_report import master_context

IGNORED = ("var/lib/etcd",)


@pytest.fixture(scope="module")
def data(sandbox: Sandbox) -> dict[str, list[str]]:
    with workload.kv_client(sandbox, 0) as kv:
        before = workload.write(kv, "before", 200)
    done = command(sandbox, 0, "backup", "/home/core/backup")
    assert done.returncode == 0, done.stderr
    with workload.kv_client(sandbox, 1) as kv:
        after = workload.write(kv, "after", 50)
    return {"before": before, "after": after}


def backup_dir(sandbox: Sandbox) -> Path:
    return sandbox.root(0) / "var/home/core/backup"


def refused(sandbox: Sandbox, args: list[str], exit_code: int, *,
            env: dict[str, str] | None = None) -> str:
    with assert_host_unchanged(sandbox.root(0), IGNORED):
        done = command(sandbox, 0, "restore", *args, "--yes", extra_env=env)
        assert done.returncode == exit_code, done.stdout + done.stderr
    assert "error: " in done.stderr and "next:" in done.stderr
    return done.stderr


def own_cluster(sandbox: Sandbox) -> str:
    return cluster_of(sandbox, [0])


def restore_summary(stdout: str) -> dict:  # type: ignore[type-arg]
    [summary] = [json.loads(line) for line in stdout.splitlines() if "restore.summary" in line]
    return summary  # type: ignore[no-any-return]


@pytest.mark.parametrize(("cluster", "message"), [
    ("", "INITIAL_CLUSTER is empty"),
    ("etcd-member-master-1=https://127.0.0.12:2380", "is not in INITIAL_CLUSTER"),
    ("etcd-member-master-0=http://127.0.0.11:2380", "must be https"),
    ("x=https://127.0.0.11:2380,x=https://127.0.0.12:2380", "more than once"),
    ("etcd-member-master-0", "not NAME=URL"),
])
def test_bad_initial_cluster(sandbox: Sandbox, data: dict, cluster: str, message: str) -> None:  # type: ignore[type-arg]
    assert message in refused(sandbox, ["/home/core/backup", "--initial-cluster", cluster], 3)


def test_missing_backup(sandbox: Sandbox, data: dict) -> None:  # type: ignore[type-arg]
    refused(sandbox, ["/home/core/nothing", "--initial-cluster", own_cluster(sandbox)], 3)


def test_corrupted_snapshot(sandbox: Sandbox, data: dict) -> None:  # type: ignore[type-arg]
    bad = sandbox.root(0) / "var/home/core/bad-snapshot"
    shutil.copytree(backup_dir(sandbox), bad)
    [snapshot] = bad.glob("snapshot_*.db")
    raw = bytearray(snapshot.read_bytes())
    raw[4096 * 3] ^= 0xFF
    snapshot.write_bytes(bytes(raw))
    err = refused(sandbox, ["/home/core/bad-snapshot", "--initial-cluster",
                            own_cluster(sandbox)], 6)
    assert "sha256 trailer does not match" in err


def test_unsafe_archive(sandbox: Sandbox, data: dict) -> None:  # type: ignore[type-arg]
    bad = sandbox.root(0) / "var/home/core/bad-archive"
    shutil.copytree(backup_dir(sandbox), bad)
    [archive] = bad.glob("static_kuberesources_*.tar.gz")
    with tarfile.open(archive, "w:gz") as tar:
        evil = tarfile.TarInfo("static-pod-resources/kube-apiserver-pod-10/../../../etc/x")
        tar.addfile(evil)
    for manifest in bad.glob("backup_*.json"):
        manifest.unlink()
    err = refused(sandbox, ["/home/core/bad-archive", "--initial-cluster",
                            own_cluster(sandbox)], 6)
    assert "unsafe path" in err


def test_raw_db_needs_skip_hash_check(sandbox: Sandbox, data: dict) -> None:  # type: ignore[type-arg]
    [snapshot] = backup_dir(sandbox).glob("snapshot_*.db")
    raw = sandbox.root(0) / "var/home/core/raw.db"
    raw.write_bytes(snapshot.read_bytes()[:-32])
    err = refused(sandbox, ["/home/core/raw.db", "--initial-cluster", own_cluster(sandbox)],
                  6)
    assert "--skip-hash-check" in err


def test_snapshot_without_its_archive(sandbox: Sandbox, data: dict) -> None:  # type: ignore[type-arg]
    lone = sandbox.root(0) / "var/home/core/lone"
    lone.mkdir()
    [snapshot] = backup_dir(sandbox).glob("snapshot_*.db")
    shutil.copy(snapshot, lone / "snapshot_2099-01-01_000000.db")
    shutil.copy(next(backup_dir(sandbox).glob("static_*.tar.gz")),
                lone / "static_kuberesources_2020-01-01_000000.tar.gz")
    err = refused(sandbox, ["/home/core/lone", "--initial-cluster", own_cluster(sandbox)], 3)
    assert "no static_kuberesources archive of the same timestamp" in err


def test_no_restore_tool_on_path(sandbox: Sandbox, data: dict) -> None:  # type: ignore[type-arg]
    path = str(sandbox.master_dir(0) / "bin")
    err = refused(sandbox, ["/home/core/backup", "--initial-cluster", own_cluster(sandbox)],
                  4, env={"PATH": path})
    assert "neither etcdutl nor etcdctl" in err


def test_operation_in_flight(sandbox: Sandbox, data: dict) -> None:  # type: ignore[type-arg]
    state = sandbox.root(0) / "var/lib/ocp-recovery"
    state.mkdir(parents=True, exist_ok=True)
    journal = state / "journal.json"
    journal.write_text(json.dumps({"id": "restore-x", "operation": "restore",
                                   "status": "failed", "started": "earlier", "pid": 1,
                                   "plan": {}, "steps": []}))
    try:
        err = refused(sandbox, ["/home/core/backup", "--initial-cluster",
                                own_cluster(sandbox)], 4)
        assert "in flight" in err
    finally:
        journal.unlink()


def test_dry_run_lists_every_change_and_makes_none(sandbox: Sandbox, data: dict) -> None:  # type: ignore[type-arg]
    with assert_host_unchanged(sandbox.root(0), IGNORED):
        # Guide 3.3's form: the sandbox is healthy, so only a rewind of all of it may run.
        done = command(sandbox, 0, "restore", "/home/core/backup", "--initial-cluster",
                       cluster_of(sandbox, [0, 1, 2]), "--rewind-healthy-cluster",
                       "--dry-run")
        assert done.returncode == 0, done.stderr
    steps = [line.split(":")[0].split(". ")[1] for line in done.stdout.splitlines()
             if ". " in line.split(":")[0]]
    assert steps == ["stop-static-pods", "wait-etcd-pod-stopped", "stop-kubelet",
                     "stop-all-containers", "set-aside-data-dir", "set-aside-revisions",
                     "restore-data-dir", "extract-static-resources", "start-static-pods",
                     "start-kubelet", "wait-healthy"]
    # The README's words for step 2.
    assert "wait (<= 300s) until the etcd-member pod is gone" in done.stdout


def test_dry_run_warns_when_the_live_revision_is_newer(sandbox: Sandbox, data: dict) -> None:  # type: ignore[type-arg]
    manifest = sandbox.root(0) / "etc/kubernetes/manifests/kube-apiserver-pod.yaml"
    original = manifest.read_text()
    manifest.write_text(original.replace("kube-apiserver-pod-10", "kube-apiserver-pod-12"))
    try:
        done = command(sandbox, 0, "restore", "/home/core/backup", "--initial-cluster",
                       cluster_of(sandbox, [0, 1, 2]), "--rewind-healthy-cluster",
                       "--dry-run")
    finally:
        manifest.write_text(original)
    assert done.returncode == 0, done.stderr
    assert "warning: the running kube-apiserver-pod.yaml uses revision 12" in done.stdout


def test_legacy_usage(sandbox: Sandbox) -> None:
    done = command(sandbox, 0, program="etcd-snapshot-restore.sh",
                   extra_env={"INITIAL_CLUSTER": ""})
    assert done.returncode == 2 and "usage: etcd-snapshot-restore.sh" in done.stderr


# ---- changes the sandbox: keep last in this module ---------------------------------------

def test_quorum_restore_then_rollback(sandbox: Sandbox, data: dict) -> None:  # type: ignore[type-arg]
    root = sandbox.root(0)
    manifests_before = sorted(p.name for p in (root / "etc/kubernetes/manifests").iterdir())
    revision_dir = root / "etc/kubernetes/static-pod-resources/kube-apiserver-pod-10"
    encryption = revision_dir / "secrets/encryption-config/encryption-config"
    encryption.write_text("changed after the backup")
    newer = root / "etc/kubernetes/static-pod-resources/kube-apiserver-pod-11"
    shutil.copytree(revision_dir, newer)
    # The restore and its rollback: the host is given back exactly.
    with assert_host_unchanged(root, (*IGNORED, "var/lib/ocp-recovery")):
        sandbox.stop_master(1)
        sandbox.stop_master(2)

        done = command(sandbox, 0, "/home/core/backup", program="etcd-snapshot-restore.sh",
                       extra_env={"INITIAL_CLUSTER": own_cluster(sandbox),
                                  "OCP_RECOVERY_LOG_FORMAT": "json"})
        assert done.returncode == 0, done.stderr
        summary = restore_summary(done.stdout)
        assert summary["healthy"] is True
        assert [m["name"] for m in summary["members"]] == ["etcd-member-master-0"]
        assert summary["next"] == ["recreate the lost masters, then add each back (guide 3.2 "
                                   "steps 2-5)"]
        assert keys_in(sandbox, 0, "before") == set(data["before"])
        assert keys_in(sandbox, 0, "after") == set()
        # The archived revision is back, the newer one set aside, the manifests all back.
        with tarfile.open(next(backup_dir(sandbox).glob("static_*.tar.gz"))) as tar:
            archived = tar.extractfile("static-pod-resources/kube-apiserver-pod-10/secrets/"
                                       "encryption-config/encryption-config").read()  # type: ignore[union-attr]
        assert encryption.read_bytes() == archived
        assert not newer.exists()
        assert sorted(p.name for p in (root / "etc/kubernetes/manifests").iterdir()) == \
            manifests_before
        [stash] = (root / "var/lib/ocp-recovery").glob("restore-*")
        assert (stash / "var-lib-etcd/member/snap").is_dir()
        assert (stash / "static-pod-resources/kube-apiserver-pod-11").is_dir()
        status = command(sandbox, 0, "status")
        assert "restore" in status.stdout and ": done" in status.stdout
        # Restoring again over it would drop its rollback: said before anything is done.
        again = command(sandbox, 0, "restore", "/home/core/backup", "--initial-cluster",
                        own_cluster(sandbox), "--rewind-healthy-cluster", "--dry-run")
        assert "is done and can still be rolled back" in again.stdout, again.stderr

        rolled = command(sandbox, 0, "rollback", "--yes")
        assert rolled.returncode == 0, rolled.stderr
    assert not stash.exists(), "an empty stash is removed after rollback"
    sandbox.start_master(1)
    sandbox.start_master(2)
    sandbox.wait_healthy([0, 1, 2], 60)
    assert keys_in(sandbox, 0, "after") == set(data["after"]), "the old member is back"
    with sandbox.client(0) as client:
        assert len(client.members()) == 3


def test_guide_3_3_says_how_many_masters_are_left_and_when_it_is_done(
        sandbox: Sandbox, data: dict, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[type-arg]
    every = cluster_of(sandbox, [0, 1, 2])
    for index in (1, 2):
        shutil.copytree(backup_dir(sandbox), sandbox.root(index) / "var/home/core/backup")
    restore_every = ["restore", "/home/core/backup", "--initial-cluster", every,
                     "--rewind-healthy-cluster", "--yes"]

    # Master-0 first, while the two others are off (or, in 3.2, lost): its wait says what
    # it waits for, and so does the timeout.
    sandbox.stop_master(1)
    sandbox.stop_master(2)
    ctx = master_context(sandbox, 0, os.environ)
    # Short, so that it times out soon; a 1 s dial, so that it checks often meanwhile.
    ctx = replace(ctx, timeouts=replace(ctx.timeouts, health=8, dial=1))
    capsys.readouterr()
    with pytest.raises(WaitTimedOut) as timed_out:
        plan_and_execute(ctx, restore.PROCEDURE, restore.RestoreRequest(
            "/home/core/backup", every, rewind_healthy_cluster=True))
    waiting = "waiting for 2 more masters to be restored (1 of 3 run etcd)"
    assert waiting in capsys.readouterr().err, "said while it waited"
    assert waiting in timed_out.value.what

    # The two others back with their old data; master-1 restored without waiting: it
    # cannot know which others are restored.
    sandbox.start_master(1)
    sandbox.start_master(2)
    sandbox.wait_healthy([1, 2], 60)
    done = command(sandbox, 1, *restore_every, "--no-wait", "--json")
    assert done.returncode == 0, done.stderr
    told = restore_summary(done.stdout)["next"]
    assert len(told) == 1 and told[0].startswith(
        "run the same restore on the other 2 masters of INITIAL_CLUSTER "
        "(etcd-member-master-0, etcd-member-master-2) unless done already"), told

    # Master-0 and master-1 form the restored cluster; master-0's wait, resumed, sees it.
    deadline, seen = time.monotonic() + 60, []
    while seen != ["(unstarted)", "etcd-member-master-0", "etcd-member-master-1"]:
        assert time.monotonic() < deadline, seen
        time.sleep(0.2)
        with contextlib.suppress(EtcdUnavailable):  # until the two elect a leader
            seen = member_names(sandbox, 0)
    done = command(sandbox, 0, "resume", "--json")
    assert done.returncode == 0, done.stderr
    assert restore_summary(done.stdout)["next"] == [
        "run the same restore on the 1 master left (etcd-member-master-2) with the same "
        "backup and --initial-cluster"]

    # The last master: the job is done, and the report says so.
    done = command(sandbox, 2, *restore_every, "-o", "console")
    assert done.returncode == 0, done.stderr
    assert "the cluster is restored (guide 3.3 done)" in done.stdout, done.stdout
    assert "next:" not in done.stdout and "run the same restore" not in done.stdout
    assert member_names(sandbox, 2) == [f"etcd-member-master-{i}" for i in range(3)]
    assert keys_in(sandbox, 2, "before") == set(data["before"])
    assert keys_in(sandbox, 2, "after") == set()

    # The result is what the wait saw: finishing again (as `resume` does after a kill at the
    # very end) asks etcd nothing, though it is down by then.
    sandbox.stop_master(2)
    ctx = master_context(sandbox, 2, os.environ)
    ctx = replace(ctx, timeouts=replace(ctx.timeouts, health=2))
    journal = Journal.load(ctx.paths.state_dir)
    assert journal is not None
    result = restore.PROCEDURE.finish(ctx, restore.PROCEDURE.load_plan(journal), journal)
    assert sorted(m.name for m in result.members) == [f"etcd-member-master-{i}"
                                                      for i in range(3)]
