"""Chapter 2 as a drill, through the CLI: lose a master, remove its member, recover a blank
master through the signer; 3 healthy members, data intact, certificates as in 4.3."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ETCD_VERSIONS, require_ceph, require_etcd


@pytest.mark.parametrize("etcd", ETCD_VERSIONS)
def test_replace_master_drill(run_cli, tmp_path: Path, etcd: str) -> None:  # type: ignore[no-untyped-def]
    require_etcd(etcd)
    out = run_cli(["drill", "replace-master", "--etcd", etcd, "--keys", "300", "--dir",
                   str(tmp_path)]).stdout
    assert "ok: 3 started healthy members: master-0, master-1, master-3" in out
    assert "ok: 300 keys read back from master-3" in out
    assert "chain to their CAs with the 4.3 profile's SANs; keys 0600" in out
    # What its operator reads: done, and no plan-time "no etcd client certificate yet".
    assert ("ok: master-3's report: member etcd-member-master-3 is started and healthy; the "
            "cluster is whole: 3 of 3 members started and healthy; no warning, no next step"
            ) in out


@pytest.mark.parametrize("etcd", ETCD_VERSIONS)
def test_quorum_loss_drill(run_cli, tmp_path: Path, etcd: str) -> None:  # type: ignore[no-untyped-def]
    require_etcd(etcd)
    out = run_cli(["drill", "quorum-loss", "--etcd", etcd, "--keys", "300", "--dir",
                   str(tmp_path)]).stdout
    assert "ok: 3 started healthy members: master-0, master-3, master-4" in out
    assert "ok: 300 keys written before the backup are back, 0 of 100 written after it" in out
    assert "ok: the old master-2 was refused: cluster ID mismatch" in out
    # The first recovered master is told one more is to come; the last, that it is done.
    assert ("ok: master-3's report names 1 more master to add; master-4's: member "
            "etcd-member-master-4 is started and healthy; the cluster is whole: 3 of 3 "
            "members started and healthy") in out


def test_offsite_restore_drill(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Guide 3.2 with the survivor's backups gone: restored from the object store alone."""
    require_etcd("3.5")
    require_ceph()
    out = run_cli(["drill", "offsite-restore", "--keys", "300", "--dir", str(tmp_path)]).stdout
    assert "fetch from the store: download, decrypt, verify" in out
    assert "encrypted to one age recipient, read back and verified; fetched with its " \
        "identity" in out
    assert "ok: 3 started healthy members: master-0, master-3, master-4" in out
    assert "ok: 300 keys written before the backup are back, 0 of 100 written after it" in out
    assert not (tmp_path / "sandbox").exists(), "a passing drill tears its sandbox down"
