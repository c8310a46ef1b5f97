"""The README's first command: the backup drill, through the CLI, as a user runs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ETCD_VERSIONS, require_etcd


@pytest.mark.parametrize("etcd", ETCD_VERSIONS)
def test_backup_drill_reports_what_it_proved(run_cli, tmp_path: Path, etcd: str) -> None:  # type: ignore[no-untyped-def]
    require_etcd(etcd)
    out = run_cli(["drill", "backup", "--etcd", etcd, "--keys", "500", "--dir",
                   str(tmp_path)]).stdout
    assert f"drill backup (etcd {etcd})" in out
    assert "ok: 500 keys written before the backup read back from the restored snapshot" in out
    assert "ok: 0 of 100 keys written after the backup are in it" in out
    assert not (tmp_path / "sandbox").exists(), "a passing drill tears its sandbox down"
