"""The step runner: journal states, resume from where it stopped, rollback newest first."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import assert_host_unchanged
from toolbox.errors import OperationInFlight, StepFailed
from toolbox.journal import Journal, Runner, Step, execute


def recording(log: list[str], fail_on: str | None = None):  # type: ignore[no-untyped-def]
    def make(name: str) -> Step:
        def do() -> None:
            if name == fail_on:
                raise RuntimeError(f"{name} broke")
            log.append(f"do {name}")
        return Step(name, f"changes {name}", do, lambda: log.append(f"undo {name}"))
    return [make(n) for n in ("a", "b", "c")]


def test_run_resume_and_rollback(tmp_path: Path) -> None:
    log: list[str] = []
    journal = Journal.begin(tmp_path, "restore", {"x": 1}, ["a", "b", "c"])
    with pytest.raises(StepFailed) as failed:
        Runner(journal, recording(log, fail_on="b")).run()
    assert "steps done: a" in failed.value.state and "resume" in str(failed.value.next_step)
    again = Journal.load(tmp_path)
    assert again is not None and again.status == "failed" and again.current == "b"
    with pytest.raises(OperationInFlight):
        Journal.begin(tmp_path, "restore", {}, ["a"])
    Runner(again, recording(log)).run()
    assert log == ["do a", "do b", "do c"]
    assert Journal.load(tmp_path).status == "done"  # type: ignore[union-attr]
    Runner(again, recording(log)).rollback()
    assert log[3:] == ["undo c", "undo b", "undo a"]
    assert Journal.load(tmp_path).status == "rolled-back"  # type: ignore[union-attr]


def test_rollback_undoes_the_interrupted_step_too(tmp_path: Path) -> None:
    log: list[str] = []
    journal = Journal.begin(tmp_path, "restore", {}, ["a", "b", "c"])
    journal.mark("a", "done")
    journal.mark("b", "running")  # killed inside b
    Runner(journal, recording(log)).rollback()
    assert log == ["undo b", "undo a"]


def test_a_finished_journal_is_archived_by_the_next_operation(tmp_path: Path) -> None:
    first = Journal.begin(tmp_path, "restore", {}, ["a"])
    Runner(first, recording([])[:1]).run()
    Journal.begin(tmp_path, "restore", {}, ["a"])
    assert len(list(tmp_path.glob("journal-restore-*.json"))) == 1


def test_a_second_operation_leaves_the_one_in_flight_resumable(tmp_path: Path) -> None:
    log: list[str] = []
    with pytest.raises(StepFailed):
        execute(tmp_path, "restore", {}, lambda journal: recording(log, fail_on="b"))
    with assert_host_unchanged(tmp_path), pytest.raises(OperationInFlight, match="restore"):
        execute(tmp_path, "member-add", {}, lambda journal: recording(log))
    assert log == ["do a"], "the refused operation ran no step"
    Runner(Journal.load(tmp_path), recording(log)).run()  # type: ignore[arg-type]
    assert log == ["do a", "do b", "do c"]
