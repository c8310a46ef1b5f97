"""Guide chapter 2 on sandbox masters (etcd 3.4 and 3.5): a failed master's member removed
by exact name, refusals that protect quorum, and the repaired master added back."""

from __future__ import annotations

import json

from tests.conftest import assert_host_unchanged
from tests.e2e.helpers import command, keys_in, member_names
from toolbox.sandbox import workload
from toolbox.sandbox.cluster import Sandbox


def test_replace_one_master_with_valid_certificates(sandbox: Sandbox) -> None:
    with workload.kv_client(sandbox, 0) as kv:
        written = set(workload.write(kv, "members", 200))
    sandbox.stop_master(2)  # master-2 fails

    refused = command(sandbox, 0, "member", "remove", "etcd-member-master-1")
    assert refused.returncode == 4 and "below quorum" in refused.stderr
    refused = command(sandbox, 0, "member", "remove", "etcd-member-master-0")
    assert refused.returncode == 4 and "this master's own" in refused.stderr
    refused = command(sandbox, 0, "member", "remove", "etcd-member-master-.*")
    assert refused.returncode == 3 and "no etcd member is named" in refused.stderr
    assert member_names(sandbox, 0) == [f"etcd-member-master-{i}" for i in range(3)]

    removed = command(sandbox, 0, "etcd-member-master-2", program="etcd-member-remove.sh")
    assert removed.returncode == 0, removed.stderr
    assert member_names(sandbox, 0) == ["etcd-member-master-0", "etcd-member-master-1"]

    # master-2 is repaired (its certificates are still valid) and powered on: its old etcd
    # was removed from the cluster, so it cannot serve; add it back.
    sandbox.start_master(2)
    with assert_host_unchanged(sandbox.root(2), ("var/lib/etcd", "run/etcd")):
        dry = command(sandbox, 2, "member", "add", "127.0.0.11", "etcd-member-master-2",
                      "--dry-run")
        assert dry.returncode == 0, dry.stderr
    assert "member-add: etcd member add etcd-member-master-2 https://127.0.0.13:2380" in \
        dry.stdout

    added = command(sandbox, 2, "127.0.0.11", "etcd-member-master-2",
                    extra_env={"OCP_RECOVERY_LOG_FORMAT": "json"},
                    program="etcd-member-add.sh")
    assert added.returncode == 0, added.stderr
    [summary] = [json.loads(line) for line in added.stdout.splitlines()
                 if "member_add.summary" in line]
    assert summary["healthy"] is True
    assert sorted(m["name"] for m in summary["members"]) == [
        f"etcd-member-master-{i}" for i in range(3)]
    assert member_names(sandbox, 2) == [f"etcd-member-master-{i}" for i in range(3)]
    assert keys_in(sandbox, 2, "members") == written
    env = (sandbox.root(2) / "run/etcd/environment").read_text()
    assert "ETCD_INITIAL_CLUSTER_STATE=existing" in env
    [stash] = (sandbox.root(2) / "var/lib/ocp-recovery").glob("member-add-*")
    assert (stash / "var-lib-etcd/member").is_dir(), "the old data dir is kept"

    again = command(sandbox, 2, "member", "add", "127.0.0.11", "etcd-member-master-2")
    assert again.returncode == 4 and "etcd already runs here" in again.stderr


def test_legacy_member_usage(sandbox: Sandbox) -> None:
    assert command(sandbox, 0, program="etcd-member-remove.sh").returncode == 2
    assert command(sandbox, 0, "1.2.3.4", program="etcd-member-add.sh").returncode == 2
