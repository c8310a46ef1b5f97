"""The step runner: journal states, resume from where it stopped, rollback newest first; a
plan survives its trip through the journal."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import assert_host_unchanged
from toolbox.context import Context, build_context
from toolbox.errors import OperationInFlight, StepFailed, WaitTimedOut
from toolbox.journal import (
    Confirmation,
    Journal,
    Plan,
    Procedure,
    Runner,
    Step,
    StepRun,
    execute,
    new_operation_id,
)


@dataclass(frozen=True)
class Tool:
    path: str
    can_bump: bool


@dataclass(frozen=True)
class ExamplePlan(Plan):
    fail_on: str | None
    tool: Tool
    names: tuple[str, ...]
    bump: int | None = None


class Recording(Procedure[str | None, ExamplePlan, list[str]]):
    """Steps a, b, c that append to `log`; `fail_on` breaks one."""

    plan_type = ExamplePlan

    def __init__(self, operation: str, log: list[str]):
        self.operation = operation  # type: ignore[misc]
        self.log = log

    def plan(self, ctx: Context, request: str | None) -> ExamplePlan:
        return ExamplePlan(f"{self.operation}-1", (), request, Tool("/bin/etcdutl", True),
                           ("a", "b", "c"))

    def steps(self, ctx: Context, plan: ExamplePlan) -> list[Step[ExamplePlan]]:
        def make(name: str) -> Step[ExamplePlan]:
            def do(run: StepRun[ExamplePlan]) -> None:
                if name == run.plan.fail_on:
                    raise RuntimeError(f"{name} broke")
                self.log.append(f"do {name}")
            return Step(name, f"changes {name}", do,
                        lambda run: self.log.append(f"undo {name}"))
        return [make(n) for n in plan.names]

    def finish(self, ctx: Context, plan: ExamplePlan, journal: Journal) -> list[str]:
        return list(self.log)

    def confirmation(self, plan: ExamplePlan) -> Confirmation:
        return Confirmation("example", "Go?")


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    (tmp_path / "etc/kubernetes").mkdir(parents=True)
    return build_context({}, host_root=str(tmp_path), host_exec="direct",
                         state_dir="/var/lib/ocp-recovery")


def runner(ctx: Context, journal: Journal, procedure: Recording) -> Runner:
    plan = procedure.load_plan(journal)
    return Runner(journal, procedure.steps(ctx, plan), StepRun(ctx, plan, journal))


def test_a_plan_comes_back_from_the_journal_as_it_went_in(ctx: Context) -> None:
    plan = ExamplePlan("x-1", ("careful",), None, Tool("/bin/etcdutl", True), ("a", "b"),
                       bump=1_000_000_000)
    import json

    stored: dict[str, Any] = json.loads(json.dumps(plan.record()))
    assert ExamplePlan.from_record(stored) == plan


def test_run_resume_and_rollback(ctx: Context) -> None:
    log: list[str] = []
    procedure = Recording("restore", log)
    with pytest.raises(StepFailed) as failed:
        execute(ctx, procedure, procedure.plan(ctx, "b"))
    assert "steps done: a" in failed.value.state and "resume" in str(failed.value.next_step)
    state_dir = ctx.paths.state_dir
    again = Journal.load(state_dir)
    assert again is not None and again.status == "failed" and again.current == "b"
    with pytest.raises(OperationInFlight):
        Journal.begin(state_dir, "restore", {}, ["a"])
    # Resumed with the plan fixed: b no longer fails.
    again.data["plan"]["fail_on"] = None
    runner(ctx, again, procedure).run()
    assert log == ["do a", "do b", "do c"]
    assert Journal.load(state_dir).status == "done"  # type: ignore[union-attr]
    runner(ctx, again, procedure).rollback()
    assert log[3:] == ["undo c", "undo b", "undo a"]
    assert Journal.load(state_dir).status == "rolled-back"  # type: ignore[union-attr]


class WaitingTooLong(Recording):
    """Step b's wait runs out: with what it knows of the cluster (as member add's does), or
    knowing nothing more than the runner."""

    def __init__(self, log: list[str], known: str | None):
        super().__init__("member-add", log)
        self.known = known

    def steps(self, ctx: Context, plan: ExamplePlan) -> list[Step[ExamplePlan]]:
        def wait(run: StepRun[ExamplePlan]) -> None:
            raise WaitTimedOut("waited 1s for member x", state=self.known,
                               next_step="check its log")
        a, _b, c = super().steps(ctx, plan)
        return [a, Step("b", "waits", wait, None), c]


def test_status_after_a_rollback_tells_undone_steps_from_waits(ctx: Context) -> None:
    """A wait changed nothing: after a rollback `status` does not claim it was undone, nor
    that a step never run is still to come."""
    from toolbox.procedures import inflight

    procedure = WaitingTooLong([], None)
    with pytest.raises(WaitTimedOut):
        execute(ctx, procedure, procedure.plan(ctx, None))
    journal = Journal.load(ctx.paths.state_dir)
    assert journal is not None
    runner(ctx, journal, procedure).rollback()
    shown = inflight.status(ctx).report()
    assert shown.fields["steps"] == [{"name": "a", "state": "undone"},
                                     {"name": "b", "state": "no-undo"},
                                     {"name": "c", "state": "not run"}]
    assert "  no-undo  b" in shown.details and "  not run  c" in shown.details


@pytest.mark.parametrize("known", [None, "x is added but not serving"])
def test_a_wait_that_ran_out_keeps_what_its_step_knows(ctx: Context, known: str | None) -> None:
    procedure = WaitingTooLong([], known)
    with pytest.raises(WaitTimedOut) as ran_out:
        execute(ctx, procedure, procedure.plan(ctx, None))
    state = ran_out.value.state
    assert state.startswith("part-way: steps done: a; the wait `b` ran out")
    assert state.endswith("; x is added but not serving") if known else \
        state.endswith("ran out"), state
    assert ran_out.value.next_step.startswith("check its log; then `ocp-recovery resume`")


def test_status_after_a_wait_ran_out_says_so_and_that_resume_waits_again(
        ctx: Context) -> None:
    from toolbox.procedures import inflight

    procedure = WaitingTooLong([], None)
    with pytest.raises(WaitTimedOut):
        execute(ctx, procedure, procedure.plan(ctx, None))
    shown = inflight.status(ctx).report()
    assert shown.summary.endswith(": its wait `b` ran out"), shown.summary
    assert shown.details[:5] == ["  done     a", "  ran out  b", "  pending  c",
                                 "it waited 1s for member x",  # why, after the error is gone
                                 "what it said to do: check its log"], shown.details
    assert "`ocp-recovery resume` waits again" in shown.details[5]
    assert shown.fields["status"] == "timed-out"
    assert shown.next == ["ocp-recovery resume", "ocp-recovery rollback"]


def test_status_after_ctrl_c_says_interrupted_not_failed(ctx: Context) -> None:
    from toolbox.errors import Interrupted
    from toolbox.procedures import inflight

    class CtrlC(Recording):
        def steps(self, ctx: Context, plan: ExamplePlan) -> list[Step[ExamplePlan]]:
            def pressed(run: StepRun[ExamplePlan]) -> None:
                raise KeyboardInterrupt
            a, _b, c = super().steps(ctx, plan)
            return [a, Step("b", "is interrupted", pressed, None), c]

    procedure = CtrlC("restore", [])
    with pytest.raises(Interrupted):
        execute(ctx, procedure, procedure.plan(ctx, None))
    shown = inflight.status(ctx).report()
    assert shown.summary.endswith(": interrupted part-way (Ctrl-C or SIGTERM)"), shown.summary
    assert shown.fields["status"] == "stopped part-way"
    assert shown.next == ["ocp-recovery resume", "ocp-recovery rollback"]


def test_rollback_undoes_the_interrupted_step_too(ctx: Context) -> None:
    log: list[str] = []
    procedure = Recording("restore", log)
    journal = Journal.begin(ctx.paths.state_dir, "restore",
                            procedure.plan(ctx, None).record(), ["a", "b", "c"])
    journal.mark("a", "done")
    journal.mark("b", "running")  # killed inside b
    runner(ctx, journal, procedure).rollback()
    assert log == ["undo b", "undo a"]


def test_a_finished_journal_is_archived_by_the_next_operation(ctx: Context) -> None:
    procedure = Recording("restore", [])
    execute(ctx, procedure, procedure.plan(ctx, None))
    Journal.begin(ctx.paths.state_dir, "restore", {}, ["a"])
    assert len(list(ctx.paths.state_dir.glob("journal-restore-*.json"))) == 1


def test_a_second_operation_leaves_the_one_in_flight_resumable(ctx: Context) -> None:
    log: list[str] = []
    restore, member_add = Recording("restore", log), Recording("member-add", log)
    with pytest.raises(StepFailed):
        execute(ctx, restore, restore.plan(ctx, "b"))
    with assert_host_unchanged(ctx.paths.state_dir), \
            pytest.raises(OperationInFlight, match="restore"):
        execute(ctx, member_add, member_add.plan(ctx, None))
    assert log == ["do a"], "the refused operation ran no step"
    journal = Journal.load(ctx.paths.state_dir)
    assert journal is not None
    journal.data["plan"]["fail_on"] = None
    runner(ctx, journal, restore).run()
    assert log == ["do a", "do b", "do c"]


def test_two_plans_in_one_second_get_two_ids() -> None:
    """Two shells planning at once: one id would make the second journal replace the first
    one's archive, and `rollback` would undo the wrong run."""
    assert len({new_operation_id("objects-restore") for _ in range(50)}) == 50


def test_a_journal_stopped_before_its_first_step_does_not_block_the_next(ctx: Context) -> None:
    """Ctrl-C between the journal and its first step changed nothing: the same command
    again may start (it holds the host lock, so the other run is gone)."""
    Journal.begin(ctx.paths.state_dir, "objects-restore", {"id": "objects-restore-1"},
                  ["create-objects"])
    log: list[str] = []
    restore = Recording("restore", log)
    execute(ctx, restore, restore.plan(ctx, None))
    assert log == ["do a", "do b", "do c"]
    archived = Journal(None, json.loads(
        (ctx.paths.state_dir / "journal-objects-restore-1.json").read_text()))
    assert archived.status == "nothing-changed"
