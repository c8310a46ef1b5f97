"""The static-resources archive: a good one is read and extracted with its modes and links.
(Hostile and broken archives: tests/reliability/test_hostile_archive.py.)"""

from __future__ import annotations

from pathlib import Path

from tests.reliability.hostile import REV, good, info, make
from toolbox.host.archive import extract_revision, inspect_archive


def test_a_good_archive_and_its_extraction(tmp_path: Path) -> None:
    archive = good(tmp_path / "a.tar.gz")
    contents = inspect_archive(archive)
    assert contents.revision == 7 and contents.legacy_snapshot_bytes is None
    extract_revision(archive, 7, tmp_path / "out")
    secret = tmp_path / "out/secrets/encryption-config/encryption-config"
    assert secret.read_bytes() == b"keys" and oct(secret.stat().st_mode & 0o777) == "0o600"
    assert (tmp_path / "out/configmaps/x/link").is_symlink()


def test_legacy_single_file_is_recognised(tmp_path: Path) -> None:
    archive = make(tmp_path / "snapshot_db_kuberesources_x.tar.gz", info(f"{REV}/a"),
                   info("snapshot.db"), data={"snapshot.db": b"x" * 100})
    assert inspect_archive(archive).legacy_snapshot_bytes == 100
