"""The static-resources archive: a good one is read and extracted with its modes and links.
(Hostile and broken archives: tests/reliability/test_hostile_archive.py.)"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from tests.conftest import assert_host_unchanged
from tests.reliability.hostile import REV, good, info, make
from tests.reliability.test_hostile_archive import HOSTILE_MEMBERS
from toolbox.errors import IntegrityError
from toolbox.host import archive as archive_module
from toolbox.host.archive import extract_revision, inspect_archive


@pytest.fixture(params=["this-python", "by-hand"])
def extraction(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both ways of extracting: tarfile's data filter where Python has it (3.11.4+), our own
    limits where it does not (Debian 12's python3 is 3.11.2)."""
    if request.param == "by-hand":
        monkeypatch.setattr(archive_module, "_DATA_FILTER", None)


def owned_by_someone(*members: tarfile.TarInfo) -> tuple[tarfile.TarInfo, ...]:
    for member in members:
        member.uid, member.gid, member.uname, member.gname = 1234, 1234, "", ""
    return members


def test_a_good_archive_and_its_extraction(tmp_path: Path, extraction: None) -> None:
    archive = make(tmp_path / "a.tar.gz", *owned_by_someone(
        info("static-pod-resources", tarfile.DIRTYPE, mode=0o755),
        info(REV, tarfile.DIRTYPE, mode=0o755),
        info(f"{REV}/secrets", tarfile.DIRTYPE, mode=0o750),
        info(f"{REV}/secrets/key"),
        info(f"{REV}/setuid-and-writable", mode=0o4777),
        info(f"{REV}/link", tarfile.SYMTYPE, link="secrets/key")),
        data={f"{REV}/secrets/key": b"keys", f"{REV}/setuid-and-writable": b"x"})
    contents = inspect_archive(archive)
    assert contents.revision == 7 and contents.legacy_snapshot_bytes is None
    out = tmp_path / "out"
    extract_revision(archive, 7, out)
    modes = {p.relative_to(out).as_posix(): oct(p.lstat().st_mode & 0o7777)
             for p in out.rglob("*") if not p.is_symlink()}
    assert modes == {"secrets": "0o750", "secrets/key": "0o600",
                     "setuid-and-writable": "0o755"}  # no setuid, no group/other write
    assert (out / "secrets/key").read_bytes() == b"keys"
    assert (out / "link").readlink() == Path("secrets/key")
    assert {p.lstat().st_uid for p in out.rglob("*")} == {os.getuid()}  # not the archive's


def test_the_good_archive_builder_extracts(tmp_path: Path) -> None:
    archive = good(tmp_path / "a.tar.gz")
    extract_revision(archive, 7, tmp_path / "out")
    secret = tmp_path / "out/secrets/encryption-config/encryption-config"
    assert secret.read_bytes() == b"keys" and oct(secret.stat().st_mode & 0o777) == "0o600"
    assert (tmp_path / "out/configmaps/x/link").is_symlink()


@pytest.mark.parametrize(("members", "message"), HOSTILE_MEMBERS)
def test_a_hostile_entry_is_refused_by_either_extraction(
        tmp_path: Path, extraction: None, members: list[tarfile.TarInfo], message: str) -> None:
    host = tmp_path / "host"
    host.mkdir()
    archive = make(tmp_path / "x.tar.gz", info(REV, tarfile.DIRTYPE, mode=0o755),
                   info(f"{REV}/ok"), *members)
    with assert_host_unchanged(host, ignore=("staging",)), \
            pytest.raises(IntegrityError, match=message):
        extract_revision(archive, 7, host / "staging")


def test_legacy_single_file_is_recognised(tmp_path: Path) -> None:
    archive = make(tmp_path / "snapshot_db_kuberesources_x.tar.gz", info(f"{REV}/a"),
                   info("snapshot.db"), data={"snapshot.db": b"x" * 100})
    assert inspect_archive(archive).legacy_snapshot_bytes == 100
