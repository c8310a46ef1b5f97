"""`snapshot verify` of a good snapshot, through the CLI against a tmp host root. (Broken and
hostile snapshots: tests/reliability/test_hostile_snapshot.py.)"""

from pathlib import Path

from tests.reliability.hostile import bolt_db, master_root, with_trailer


def test_a_good_snapshot_verifies(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Also proves the hand-made snapshot the hostile tests damage is a valid one.
    host = master_root(tmp_path / "host")
    (host / "home/core/ok.db").write_bytes(with_trailer(bolt_db()))
    out = run_cli(["--host-root", str(host), "--host-exec", "direct", "--log-format",
                   "console", "snapshot", "verify", "/home/core/ok.db"]).stdout
    assert "ok.db: ok revision 5, 5 keys" in out
