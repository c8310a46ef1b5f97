"""Hostile and broken static-resources archives are refused before anything is extracted:
`restore` names the problem, exits 6 and leaves the host as it was; an archive replaced by a
hostile one after those checks is refused where it is extracted, with nothing written outside
the staging directory."""

from __future__ import annotations

import gzip
import tarfile
from pathlib import Path

import pytest

from tests.conftest import assert_host_unchanged
from tests.e2e.helpers import backed_up_sandbox, cluster_of, command, keys_in
from tests.reliability.hostile import (
    ETCD_IP,
    REV,
    backup_set,
    good,
    info,
    make,
    master_root,
    refused,
)
from toolbox.errors import IntegrityError
from toolbox.host import archive as archive_module
from toolbox.host.archive import extract_revision, inspect_archive

pytestmark = pytest.mark.hostile("archive")

# --dry-run: the refusal comes from the preflight, which a dry run performs in full; should
# the product accept a hostile archive, the test then fails without restoring on this machine.
RESTORE = ["restore", "/home/core/backup", "--initial-cluster",
           f"etcd-member-m0=https://{ETCD_IP}:2380", "--dry-run"]


@pytest.fixture
def host(tmp_path: Path) -> Path:
    return master_root(tmp_path / "host")


def restore_refuses(run_cli, host: Path, archive: Path) -> str:  # type: ignore[no-untyped-def]
    backup_set(host / "home/core/backup", archive=archive)
    return refused(run_cli, host, RESTORE, 6).stderr  # type: ignore[no-any-return]


HOSTILE_MEMBERS = [
    pytest.param([info("/etc/passwd")], "unsafe path", id="absolute"),
    pytest.param([info(f"{REV}/../../../etc/passwd")], "unsafe path", id="dotdot-inside"),
    pytest.param([info("../etc/passwd")], "unsafe path", id="dotdot-first"),
    pytest.param([info("../kube-apiserver-pod-1/x")], "unsafe path",
                 id="dotdot-revision-dir"),
    pytest.param([info(f"{REV}/evil", tarfile.SYMTYPE, link="/etc/shadow")],
                 "leaves its revision", id="symlink-absolute"),
    pytest.param([info(f"{REV}/evil", tarfile.SYMTYPE, link="../../../etc")],
                 "leaves its revision", id="symlink-dotdot"),
    pytest.param([info(f"{REV}/evil", tarfile.SYMTYPE, link="../kube-apiserver-pod-8/x")],
                 "leaves its revision", id="symlink-to-another-revision"),
    pytest.param([info(f"{REV}/hard", tarfile.LNKTYPE, link="etc/passwd")], "hard link",
                 id="hardlink-outside"),
    pytest.param([info(f"{REV}/hard", tarfile.LNKTYPE, link=f"{REV}/ok")], "hard link",
                 id="hardlink-inside"),
    pytest.param([info(f"{REV}/dev", tarfile.CHRTYPE)], "device", id="char-device"),
    pytest.param([info(f"{REV}/disk", tarfile.BLKTYPE)], "device", id="block-device"),
    pytest.param([info(f"{REV}/fifo", tarfile.FIFOTYPE)], "device", id="fifo"),
    pytest.param([info("static-pod-resources/kube-apiserver-pod-x/file")], "not under",
                 id="revision-x"),
    pytest.param([info("static-pod-resources/kube-apiserver-pod-1x/file")], "not under",
                 id="revision-1x"),
    pytest.param([info("static-pod-resources/kube-apiserver-pod-/file")], "not under",
                 id="revision-empty"),
    pytest.param([info("static-pod-resources/etcd-member/system:etcd-peer.key")], "not under",
                 id="etcd-member-dir"),
    pytest.param([info("etc/kubernetes/manifests/evil.yaml")], "not under", id="manifests"),
    pytest.param([info("static-pod-resources/kube-apiserver-pod-8/a")], "several revisions",
                 id="two-revisions"),
    pytest.param([info(f"{REV}/up", tarfile.SYMTYPE, link="../../../.."),
                  info(f"{REV}/up/escaped")], "leaves its revision",
                 id="file-through-an-escaping-symlink"),
]


@pytest.mark.parametrize(("members", "message"), HOSTILE_MEMBERS)
def test_hostile_members_are_refused(run_cli, host: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                     members: list[tarfile.TarInfo], message: str) -> None:
    archive = make(tmp_path / "bad.tar.gz", info(f"{REV}/ok"), *members)
    err = restore_refuses(run_cli, host, archive)
    assert message in err and "static_kuberesources_" in err


def test_truncated_archive(run_cli, host: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    archive = good(tmp_path / "a.tar.gz")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    assert "not a readable gzip tar" in restore_refuses(run_cli, host, cut)


def test_garbage_archive(run_cli, host: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not gzip at all")
    assert "not a readable gzip tar" in restore_refuses(run_cli, host, junk)


def test_gzip_bomb_is_capped(tmp_path: Path) -> None:
    big = b"\0" * (4 << 20)
    archive = make(tmp_path / "bomb.tar.gz", info(f"{REV}/zeros"), data={f"{REV}/zeros": big})
    assert archive.stat().st_size < 64 << 10
    with pytest.raises(IntegrityError, match="archive bomb"):
        inspect_archive(archive, bytes_cap=1 << 20)


def test_a_legacy_snapshot_counts_apart_from_the_cap(tmp_path: Path) -> None:
    """A 4.3.0 archive of an 8 GiB db is no bomb: its snapshot.db has a cap of its own (shown
    here at 1 MiB for the rest, so the test inflates 4 MiB, not gigabytes)."""
    snapshot = b"\0" * (4 << 20)
    legacy = make(tmp_path / "legacy.tar.gz", info("snapshot.db"),
                  info("static-pod-resources", tarfile.DIRTYPE, mode=0o755),
                  info(REV, tarfile.DIRTYPE, mode=0o755), info(f"{REV}/small"),
                  data={"snapshot.db": snapshot, f"{REV}/small": b"x"})
    contents = inspect_archive(legacy, bytes_cap=1 << 20)
    assert contents.legacy_snapshot_bytes == len(snapshot)
    inflated = make(tmp_path / "inflated.tar.gz", info("snapshot.db"), info(f"{REV}/big"),
                    data={"snapshot.db": b"x", f"{REV}/big": snapshot})
    with pytest.raises(IntegrityError, match="archive bomb"):
        inspect_archive(inflated, bytes_cap=1 << 20)


def test_a_legacy_snapshot_larger_than_any_db_is_refused(tmp_path: Path) -> None:
    # Only the header: the refusal comes before a byte of the claimed 17 GiB is read.
    header = info("snapshot.db")
    header.size = 17 << 30
    claimed = tmp_path / "claimed.tar.gz"
    claimed.write_bytes(gzip.compress(header.tobuf(format=tarfile.GNU_FORMAT)))
    with pytest.raises(IntegrityError, match="more than the 16 GiB an etcd db can be"):
        inspect_archive(claimed)


def test_gzip_bomb_at_the_default_cap(run_cli, host: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # 2 MiB that inflate past the 2 GiB cap: one compressed MiB of zeros, repeated as gzip
    # members (gzip readers concatenate members), so the bomb costs nothing to build.
    one_mib = gzip.compress(b"\0" * (1 << 20), compresslevel=9)
    bomb = tmp_path / "bomb.tar.gz"
    bomb.write_bytes(one_mib * ((archive_module.ARCHIVE_BYTES_CAP >> 20) + 2))
    assert bomb.stat().st_size < 4 << 20
    assert "archive bomb" in restore_refuses(run_cli, host, bomb)


def test_too_many_entries_are_capped(run_cli, host: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # The cap lowered from 100,000 so the test reads 101 headers, not 100,001.
    monkeypatch.setattr(archive_module, "ARCHIVE_MEMBERS_CAP", 100)
    archive = make(tmp_path / "many.tar.gz", *(info(f"{REV}/f{i}") for i in range(101)))
    assert "100 entries: refused as a possible archive bomb" in restore_refuses(
        run_cli, host, archive)


@pytest.mark.parametrize("directory", [
    pytest.param("kube-apiserver-pod-\u0663", id="arabic-indic-digit-3"),
    pytest.param("kube-apiserver-pod-\uff17", id="fullwidth-digit-7"),
    pytest.param("kube-apiserver-pod-007", id="leading-zeros"),
    pytest.param("kube-apiserver-pod-7\n", id="trailing-newline"),
])
def test_a_revision_name_that_is_not_ascii_digits_is_refused(tmp_path: Path,
                                                             directory: str) -> None:
    archive = make(tmp_path / "odd.tar.gz", info(f"static-pod-resources/{directory}"))
    with pytest.raises(IntegrityError, match="not under"):
        inspect_archive(archive)


# ---- an archive replaced after the plan accepted it ----------------------------------------
STAGING = "etc/kubernetes/static-pod-resources/.kube-apiserver-pod-7.partial"


@pytest.mark.parametrize(("members", "message"), HOSTILE_MEMBERS)
def test_an_archive_replaced_after_its_checks_is_refused_where_it_is_extracted(
        host: Path, tmp_path: Path, members: list[tarfile.TarInfo], message: str) -> None:
    archive = good(tmp_path / "static_kuberesources_x.tar.gz")
    assert inspect_archive(archive).revision == 7  # what the plan saw
    make(archive, info(REV, tarfile.DIRTYPE, mode=0o755), info(f"{REV}/ok"), *members)
    with assert_host_unchanged(host, ignore=(STAGING,)), \
            pytest.raises(IntegrityError, match=message) as refusal:
        extract_revision(archive, 7, host / STAGING)
    assert "the archive changed since it was checked" in refusal.value.what


# Each swapped in, in turn, for the backup's archive of revision N; in the sandbox's host
# root, whose parents are this test's tmp directory.
SWAPPED = {
    "path-traversal": ([info("{rev}/../../../../escaped")], "unsafe path"),
    "absolute-symlink": ([info("{rev}/evil", tarfile.SYMTYPE, link="/etc/shadow")],
                         "leaves its revision"),
    "file-through-an-escaping-symlink": (
        [info("{rev}/up", tarfile.SYMTYPE, link="../../../.."), info("{rev}/up/escaped")],
        "leaves its revision"),
    "device": ([info("{rev}/dev", tarfile.CHRTYPE)], "device"),
}


def test_an_archive_swapped_before_the_extract_step_is_refused_on_resume(
        tmp_path: Path) -> None:
    with backed_up_sandbox(tmp_path / "sb", masters=1, keys=20) as sandbox:
        root = sandbox.root(0)
        [archive] = (root / "var/home/core/backup").glob("static_kuberesources_*.tar.gz")
        revision = inspect_archive(archive).revision
        killed = command(sandbox, 0, "restore", "/home/core/backup", "--initial-cluster",
                         cluster_of(sandbox, [0]), "--rewind-healthy-cluster", "--yes",
                         kill_after="restore-data-dir")
        assert killed.returncode == -9, killed.stderr
        backed_up = archive.read_bytes()
        rev = f"static-pod-resources/kube-apiserver-pod-{revision}"
        staging = f"etc/kubernetes/static-pod-resources/.kube-apiserver-pod-{revision}.partial"
        for case, (members, message) in SWAPPED.items():
            make(archive, info(rev, tarfile.DIRTYPE, mode=0o755), info(f"{rev}/ok"),
                 *(info(m.name.format(rev=rev), m.type, m.linkname, m.mode) for m in members))
            with assert_host_unchanged(root, ignore=("var/lib/ocp-recovery", staging)):
                resumed = command(sandbox, 0, "resume")
            assert resumed.returncode == 11, (case, resumed.stderr)
            assert "step `extract-static-resources` of restore failed" in resumed.stderr
            assert message in resumed.stderr and "Traceback" not in resumed.stderr, case
        archive.write_bytes(backed_up)  # the operator puts the backup's own archive back
        resumed = command(sandbox, 0, "resume")
        assert resumed.returncode == 0, resumed.stderr
        assert len(keys_in(sandbox, 0, "before")) == 20
