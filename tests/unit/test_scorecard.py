"""The README's reliability scorecard: made from a real run's junit XML, counting only the
tests that passed, and listing exactly the reliability tests collected now."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability.scorecard import (
    ROOT,
    Row,
    differences,
    readme_rows,
    render,
    rows_from_junit,
)

# A run of these, with tests/conftest.py as a plugin (it records what the scorecard reads).
SUITE = '''
import pytest
from tests.conftest import assert_host_unchanged

@pytest.mark.hostile("area")
def test_refused_and_unchanged(tmp_path):
    with assert_host_unchanged(tmp_path, ignore=("var/lib/etcd", "run")):
        pass

@pytest.mark.fault("area")
def test_no_host_check():
    pass

@pytest.mark.fault("area")
def test_changes_the_host(tmp_path):
    with assert_host_unchanged(tmp_path):
        (tmp_path / "new").write_text("x")

@pytest.mark.fault("area")
def test_skipped():
    pytest.skip("no etcd here")

@pytest.mark.fault("area")
@pytest.mark.xfail(reason="not handled yet", strict=True)
def test_gap():
    assert False
'''


def junit_of(tmp_path: Path, *args: str) -> Path:
    """The junit XML of a real pytest run (in its own process: this one is a pytest run)."""
    xml = tmp_path / "run.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    f"--junitxml={xml}", *args], cwd=ROOT, capture_output=True, timeout=300)
    assert xml.is_file()
    return xml


def test_a_run_with_a_failing_or_skipped_test_is_refused(tmp_path: Path) -> None:
    (tmp_path / "test_suite.py").write_text(SUITE)
    xml = junit_of(tmp_path, "-p", "tests.conftest", str(tmp_path / "test_suite.py"))
    with pytest.raises(SystemExit) as refused:
        rows_from_junit(xml)
    message = str(refused.value)
    assert "2 test(s) did not pass" in message
    assert "test_suite.py::test_changes_the_host: failure" in message
    assert "test_suite.py::test_skipped: skipped" in message
    assert "test_gap" not in message  # an xfail is a known gap, not a failure


def test_only_passed_tests_count_and_only_proved_host_checks(tmp_path: Path) -> None:
    (tmp_path / "test_suite.py").write_text(SUITE)
    xml = junit_of(tmp_path, "-p", "tests.conftest", str(tmp_path / "test_suite.py"),
                   "-k", "not changes_the_host and not skipped")
    rows = rows_from_junit(xml)
    by_name = {row.nodeid.rsplit("::", 1)[1]: row for row in rows}
    assert by_name == {
        "test_refused_and_unchanged": Row(by_name["test_refused_and_unchanged"].nodeid,
                                          (("hostile", "area"),), False, ("run", "var/lib/etcd")),
        "test_no_host_check": Row(by_name["test_no_host_check"].nodeid, (("fault", "area"),),
                                  False, None),
        "test_gap": Row(by_name["test_gap"].nodeid, (("fault", "area"),), True, None)}
    block = render(rows)
    assert "| area | 1 | 1 | 1 |" in block
    assert "Not counted: 1 known gaps" in " ".join(block.split())
    assert readme_rows(block) == rows  # the README's list reads back as what made it


def test_a_run_of_some_reliability_tests_records_their_host_checks_and_misses_the_rest(
        tmp_path: Path) -> None:
    snapshot = "tests/reliability/test_hostile_snapshot.py"
    through_the_cli = f"{snapshot}::test_a_fifo_named_like_a_snapshot_is_named_as_such"
    reader_only = f"{snapshot}::test_the_reader_refuses_a_zero_length_file"
    rows = rows_from_junit(junit_of(tmp_path, through_the_cli, reader_only))
    assert rows == [Row(through_the_cli, (("hostile", "snapshot"),), False, ()),
                    Row(reader_only, (("hostile", "snapshot"),), False, None)]
    missing = differences(rows, "the run")
    assert any(f"{snapshot}::test_the_reader_refuses_random_bytes" in m for m in missing)
    assert all(m.startswith("collected now, not in the run") for m in missing)


def test_readme_scorecard_lists_the_tests_collected_now() -> None:
    # A separate process: collecting tests/reliability inside this pytest run would share
    # its modules and plugins.
    done = subprocess.run([sys.executable, "-m", "tests.reliability.scorecard", "--check"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
