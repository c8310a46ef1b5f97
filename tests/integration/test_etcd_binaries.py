"""Which etcd the sandbox runs (`--etcd`): an unknown version names the ones there are, and
3.5.16 (Debian trixie) is found in the cache scripts/fetch-etcd-trixie.sh fills, or says to
run it."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolbox.errors import InvalidInput, PreconditionFailed
from toolbox.sandbox.binaries import SUPPORTED, TRIXIE_ETCD, find_etcd


def test_an_unknown_version_names_the_ones_there_are() -> None:
    with pytest.raises(InvalidInput) as refused:
        find_etcd("3.6")
    assert "etcd 3.6 is not supported" in refused.value.what
    assert refused.value.next_step == "pass --etcd 3.4 or 3.5 or 3.5.16"
    assert TRIXIE_ETCD in SUPPORTED


def fake_etcd(directory: Path, reports: str) -> None:
    directory.mkdir(parents=True)
    for tool in ("etcd", "etcdctl", "etcdutl"):
        (directory / tool).write_text(f"#!/bin/sh\necho 'etcd Version: {reports}'\n")
        (directory / tool).chmod(0o755)


def test_3_5_16_comes_from_the_cache_or_says_how_to_fill_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCP_RECOVERY_CACHE", str(tmp_path))
    with pytest.raises(PreconditionFailed) as refused:
        find_etcd("3.5.16")
    assert str(tmp_path / "etcd-3.5.16") in refused.value.what
    assert "scripts/fetch-etcd-trixie.sh" in (refused.value.next_step or "")
    fake_etcd(tmp_path / "etcd-3.5.16", "3.5.16")
    found = find_etcd("3.5.16")
    assert found.version == "3.5.16" and found.etcdutl == tmp_path / "etcd-3.5.16/etcdutl"


def test_a_cached_etcd_of_another_version_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCP_RECOVERY_CACHE", str(tmp_path))
    fake_etcd(tmp_path / "etcd-3.5.16", "3.5.17")
    with pytest.raises(PreconditionFailed, match=r"reports etcd 3\.5\.17, not 3\.5\.16"):
        find_etcd("3.5.16")
