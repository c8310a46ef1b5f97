"""The README's first command: the backup drill, through the CLI, as a user runs it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import (
    ETCD_VERSIONS,
    require_etcd,
    require_kube_apiserver,
    require_kube_controller_manager,
)


@pytest.mark.parametrize("etcd", ETCD_VERSIONS)
def test_backup_drill_reports_what_it_proved(run_cli, tmp_path: Path, etcd: str) -> None:  # type: ignore[no-untyped-def]
    require_etcd(etcd)
    out = run_cli(["drill", "backup", "--etcd", etcd, "--keys", "500", "--dir",
                   str(tmp_path)]).stdout
    assert f"drill backup (etcd {etcd})" in out
    assert "ok: 500 keys written before the backup read back from the restored snapshot" in out
    assert "ok: 0 of 100 keys written after the backup are in it" in out
    assert not (tmp_path / "sandbox").exists(), "a passing drill tears its sandbox down"


def new_drill_dirs(before: set[Path]) -> set[Path]:
    return set(Path("/var/tmp").glob("ocpr-drill-*")) - before


def test_an_unknown_etcd_version_is_refused_naming_those_there_are(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    before = set(Path("/var/tmp").glob("ocpr-drill-*"))
    for args in (["drill", "backup", "--etcd", "3.6"],
                 ["sandbox", "up", "--etcd", "3.6", "--dir", str(tmp_path / "sb")]):
        refused = run_cli(args, exit_code=3)
        assert "etcd 3.6 is not supported by the sandbox" in refused.stderr
        assert "next:  pass --etcd 3.4 or 3.5 or 3.5.16" in refused.stderr
    assert new_drill_dirs(before) == set(), "a refused drill leaves its directory behind"
    assert not (tmp_path / "sb").exists()


def test_without_a_kube_apiserver_the_drill_names_the_script_that_builds_one(  # type: ignore[no-untyped-def]
        run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the command it names works from wherever one is
    before = set(Path("/var/tmp").glob("ocpr-drill-*"))
    refused = run_cli(["drill", "expired-certs"], exit_code=4,
                      env={"OCP_RECOVERY_KUBE_APISERVER": str(tmp_path / "none")})
    assert f"{tmp_path / 'none'} ($OCP_RECOVERY_KUBE_APISERVER) is not there" in refused.stderr
    named = re.search(r"`bash (\S+)`", refused.stderr)
    assert named and named.group(1).endswith("scripts/build-kubernetes.sh"), refused.stderr
    assert Path(named.group(1)).is_file()
    assert new_drill_dirs(before) == set(), "a refused drill leaves its directory behind"


def test_the_object_restore_drill_puts_a_deleted_namespace_back(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    require_kube_apiserver()
    require_kube_controller_manager()
    out = run_cli(["drill", "object-restore", "--keys", "50", "--dir", str(tmp_path)]).stdout
    assert "drill object-restore (etcd 3.5)" in out
    assert "ok: 52 keys of drill-shop listed from the snapshot alone" in out
    assert "ok: 52 objects created with create-only transactions" in out
    assert "ok: a second run finds all 52 as in the backup and writes nothing" in out
    assert not (tmp_path / "sandbox").exists(), "a passing drill tears its sandbox down"
