"""The restore drills through the CLI, as the README tells a user to run them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ETCD_VERSIONS, require_etcd


@pytest.mark.parametrize("etcd", ETCD_VERSIONS)
def test_quorum_restore_drill(run_cli, tmp_path: Path, etcd: str) -> None:  # type: ignore[no-untyped-def]
    require_etcd(etcd)
    out = run_cli(["drill", "quorum-restore", "--etcd", etcd, "--keys", "300", "--dir",
                   str(tmp_path)]).stdout
    assert "ok: one healthy member etcd-member-master-0" in out
    assert "ok: the restore says what comes next: recreate the lost masters, then add each " \
        "back (guide 3.2 steps 2-5)" in out
    assert "ok: 300 keys written before the backup are back, 0 of 100 written after it" in out


@pytest.mark.parametrize("etcd", ETCD_VERSIONS)
def test_restore_previous_state_drill(run_cli, tmp_path: Path, etcd: str) -> None:  # type: ignore[no-untyped-def]
    require_etcd(etcd)
    out = run_cli(["drill", "restore-previous-state", "--etcd", etcd, "--keys", "300",
                   "--dir", str(tmp_path)]).stdout
    assert "ok: 3 started members, one cluster ID" in out
    assert "ok: 300 keys written before the backup are back, 0 of 100 written after it" in out
