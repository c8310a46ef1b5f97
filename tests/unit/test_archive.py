"""Hostile and broken static-resources archives are refused before anything is extracted."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from toolbox.errors import IntegrityError
from toolbox.host.archive import extract_revision, inspect_archive

REV = "static-pod-resources/kube-apiserver-pod-7"


def make(path: Path, *members: tarfile.TarInfo, data: dict[str, bytes] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for m in members:
            content = (data or {}).get(m.name)
            if content is not None:
                m.size = len(content)
            tar.addfile(m, io.BytesIO(content) if content is not None else None)
    return path


def info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o600
         ) -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.type = kind
    m.linkname = link
    m.mode = mode
    return m


def good(path: Path) -> Path:
    return make(path, info("static-pod-resources", tarfile.DIRTYPE, mode=0o755),
                info(REV, tarfile.DIRTYPE, mode=0o755),
                info(f"{REV}/secrets/encryption-config/encryption-config"),
                info(f"{REV}/configmaps/x/link", tarfile.SYMTYPE, link="../y"),
                data={f"{REV}/secrets/encryption-config/encryption-config": b"keys"})


def test_a_good_archive_and_its_extraction(tmp_path: Path) -> None:
    archive = good(tmp_path / "a.tar.gz")
    contents = inspect_archive(archive)
    assert contents.revision == 7 and contents.legacy_snapshot_bytes is None
    extract_revision(archive, 7, tmp_path / "out")
    secret = tmp_path / "out/secrets/encryption-config/encryption-config"
    assert secret.read_bytes() == b"keys" and oct(secret.stat().st_mode & 0o777) == "0o600"
    assert (tmp_path / "out/configmaps/x/link").is_symlink()


@pytest.mark.parametrize(("member", "message"), [
    (info("/etc/passwd"), "unsafe path"),
    (info(f"{REV}/../../../etc/passwd"), "unsafe path"),
    (info(f"{REV}/evil", tarfile.SYMTYPE, link="/etc/shadow"), "leaves its revision"),
    (info(f"{REV}/evil", tarfile.SYMTYPE, link="../../../etc"), "leaves its revision"),
    (info(f"{REV}/evil", tarfile.SYMTYPE, link="../kube-apiserver-pod-8/x"),
     "leaves its revision"),
    (info(f"{REV}/hard", tarfile.LNKTYPE, link="etc/passwd"), "hard link"),
    (info(f"{REV}/dev", tarfile.CHRTYPE), "device"),
    (info(f"{REV}/fifo", tarfile.FIFOTYPE), "device"),
    (info("static-pod-resources/kube-apiserver-pod-x/file"), "not under"),
    (info("static-pod-resources/etcd-member/system:etcd-peer.key"), "not under"),
    (info("etc/kubernetes/manifests/evil.yaml"), "not under"),
])
def test_hostile_members_are_refused(tmp_path: Path, member: tarfile.TarInfo,
                                     message: str) -> None:
    archive = make(tmp_path / "bad.tar.gz", info(f"{REV}/ok"), member)
    with pytest.raises(IntegrityError, match=message):
        inspect_archive(archive)


def test_two_revisions_are_refused(tmp_path: Path) -> None:
    archive = make(tmp_path / "two.tar.gz", info(f"{REV}/a"),
                   info("static-pod-resources/kube-apiserver-pod-8/a"))
    with pytest.raises(IntegrityError, match="several revisions"):
        inspect_archive(archive)


def test_gzip_bomb_is_capped(tmp_path: Path) -> None:
    big = b"\0" * (4 << 20)
    archive = make(tmp_path / "bomb.tar.gz", info(f"{REV}/zeros"), data={f"{REV}/zeros": big})
    assert archive.stat().st_size < 64 << 10
    with pytest.raises(IntegrityError, match="archive bomb"):
        inspect_archive(archive, bytes_cap=1 << 20)


def test_truncated_and_garbage_archives(tmp_path: Path) -> None:
    archive = good(tmp_path / "a.tar.gz")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(IntegrityError, match="not a readable gzip tar"):
        inspect_archive(cut)
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not gzip at all")
    with pytest.raises(IntegrityError, match="not a readable gzip tar"):
        inspect_archive(junk)


def test_legacy_single_file_is_recognised(tmp_path: Path) -> None:
    archive = make(tmp_path / "snapshot_db_kuberesources_x.tar.gz", info(f"{REV}/a"),
                   info("snapshot.db"), data={"snapshot.db": b"x" * 100})
    assert inspect_archive(archive).legacy_snapshot_bytes == 100
