"""The step runner: a journal on the host so a killed run can be resumed or rolled back.

A journaled procedure is a `Procedure`: a typed plan in (made by preflight, every check
before the first change), its steps as data, a typed result out. A step is a name, the host
change it makes, and `do`/`undo` functions of the one `StepRun` (context, plan, journal).
Before a step runs the journal says `running`; after, `done`. Every `do` and `undo` is
idempotent, because a kill can land anywhere inside one: `resume` runs the interrupted step
again, `rollback` undoes it and every step done, newest first.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import secrets
import time
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, TypeVar

from toolbox import log
from toolbox.errors import (
    Interrupted,
    OperationInFlight,
    RecoveryError,
    StepFailed,
    WaitTimedOut,
)
from toolbox.host.files import atomic_write, ensure_private_dir
from toolbox.host.lock import host_lock

if TYPE_CHECKING:
    from toolbox.context import Context
from toolbox.report import Report

_log = log.get(__name__)

PENDING, RUNNING, DONE, UNDONE = "pending", "running", "done", "undone"
# A rolled-back step that has no undo (a wait, a check): it changed nothing to give back.
NO_UNDO = "no-undo"
# A run that stopped in a wait (TIMED_OUT) made every change before it: resume waits again.
TIMED_OUT = "timed-out"
INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM inside a step
IN_FLIGHT = ("running", "failed", TIMED_OUT, INTERRUPTED)
# A run whose first step failed and was undone: closed, nothing to resume or roll back.
NOTHING_CHANGED = "nothing-changed"


def new_operation_id(operation: str) -> str:
    """`restore-20261201T075012Z-3f9a`: made once by the plan, so the stash directory the
    plan names, the prompt and the journal all carry the same id. The random part keeps two
    plans of one second apart (two shells), or the second one's journal would replace the
    first one's archive."""
    return f"{operation}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class Plan:
    """What preflight decided, stored in the journal so a resumed run follows it exactly.
    Subclasses add their fields: JSON types, tuples, and nested dataclasses of those."""

    id: str
    warnings: tuple[str, ...]

    def record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Self:
        return typing.cast(Self, _from_json(cls, data))


def _from_json(kind: Any, value: Any) -> Any:
    """The JSON of a plan back into its dataclasses and tuples (asdict made lists)."""
    if value is None:
        return None
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        hints = typing.get_type_hints(kind)
        return kind(**{f.name: _from_json(hints[f.name], value[f.name])
                       for f in dataclasses.fields(kind) if f.name in value})
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is tuple:
        item = args[0] if args else Any
        return tuple(_from_json(item, v) for v in value)
    if origin in (typing.Union, types.UnionType):
        real = [a for a in args if a is not type(None)]
        return _from_json(real[0], value) if len(real) == 1 else value
    return value


PlanT = TypeVar("PlanT", bound=Plan)
RequestT = TypeVar("RequestT")
ResultT = TypeVar("ResultT")
# What a procedure gives back; covariant, so the registry can hold every procedure.
ResultT_co = TypeVar("ResultT_co", covariant=True)


@dataclass(frozen=True)
class StepRun(Generic[PlanT]):
    """What every step function gets: the context, the plan, and the journal for facts a
    step learns that its undo (or a resumed run) needs."""

    ctx: Context
    plan: PlanT
    journal: Journal


@dataclass(frozen=True)
class Step(Generic[PlanT]):
    name: str
    change: str                                        # the host change, for --dry-run
    do: Callable[[StepRun[PlanT]], object]             # what it returns is not used
    undo: Callable[[StepRun[PlanT]], object] | None = None


@dataclass(frozen=True)
class Confirmation:
    """How a destructive command asks: what it is about, and the question."""

    title: str
    question: str


class Procedure(ABC, Generic[RequestT, PlanT, ResultT_co]):
    """A journaled procedure: `plan` checks everything and changes nothing; `steps` is pure
    (building it writes nothing); `finish` makes the result once every step is done, for a
    run and for `resume` alike."""

    operation: ClassVar[str]
    plan_type: type[PlanT]

    @abstractmethod
    def plan(self, ctx: Context, request: RequestT) -> PlanT: ...

    @abstractmethod
    def steps(self, ctx: Context, plan: PlanT) -> list[Step[PlanT]]: ...

    @abstractmethod
    def finish(self, ctx: Context, plan: PlanT, journal: Journal) -> ResultT_co: ...

    @abstractmethod
    def confirmation(self, plan: PlanT) -> Confirmation: ...

    def changes(self, ctx: Context, plan: PlanT) -> list[str]:
        return describe(self.steps(ctx, plan))

    def nothing_to_do(self, plan: PlanT) -> Report | None:
        """The report when the plan found nothing to change: then nothing runs, no journal."""
        return None

    def load_plan(self, journal: Journal) -> PlanT:
        return self.plan_type.from_record(journal.plan)


def execute(ctx: Context, procedure: Procedure[Any, PlanT, ResultT], plan: PlanT) -> ResultT:
    """Run a procedure's steps under the host lock with a new journal, then its finish."""
    steps = procedure.steps(ctx, plan)
    with host_lock(ctx.paths.state_dir, procedure.operation):
        journal = Journal.begin(ctx.paths.state_dir, procedure.operation, plan.record(),
                                [s.name for s in steps])
        Runner(journal, steps, StepRun(ctx, plan, journal)).run()
    return procedure.finish(ctx, plan, journal)


def describe(steps: list[Step[Any]]) -> list[str]:
    return [f"{i + 1:>2}. {s.name}: {s.change}" for i, s in enumerate(steps)]


class Journal:
    def __init__(self, path: Path | None, data: dict[str, Any]):
        self.path = path
        self.data = data

    @staticmethod
    def path_in(state_dir: Path) -> Path:
        return state_dir / "journal.json"

    @classmethod
    def load(cls, state_dir: Path) -> Journal | None:
        path = cls.path_in(state_dir)
        try:
            return cls(path, json.loads(path.read_text()))
        except FileNotFoundError:
            return None

    @classmethod
    def begin(cls, state_dir: Path, operation: str, plan: dict[str, Any],
              step_names: list[str]) -> Journal:
        """A new journal; refuses while another operation is in flight, archives a finished
        one (its rollback is no longer offered once another operation starts)."""
        previous = cls.load(state_dir)
        if previous is not None:
            # No step begun (a Ctrl-C between the journal and its first step): nothing was
            # changed, and the host lock held here says its process is gone. Archived.
            if previous.status in IN_FLIGHT and not previous.begun:
                previous.set_status(NOTHING_CHANGED)
            if previous.status in IN_FLIGHT:
                raise OperationInFlight(
                    f"`{previous.operation}` started {previous.data['started']} is in "
                    f"flight ({previous.status}, stopped at step {previous.current or '-'})",
                    state="part-way through that operation",
                    next_step="ocp-recovery status, then ocp-recovery resume or "
                    "ocp-recovery rollback")
            previous.path.rename(state_dir / f"journal-{previous.data['id']}.json")  # type: ignore[union-attr]
        ensure_private_dir(state_dir)
        stamp = dt.datetime.now(dt.UTC)
        journal = cls(cls.path_in(state_dir), {
            "id": plan.get("id") or new_operation_id(operation),
            "operation": operation,
            "started": stamp.isoformat(timespec="seconds"),
            "pid": os.getpid(),
            "status": "running",
            "plan": plan,
            "steps": [{"name": n, "state": PENDING} for n in step_names],
        })
        journal.save()
        return journal

    @property
    def operation(self) -> str:
        return str(self.data["operation"])

    @property
    def status(self) -> str:
        return str(self.data["status"])

    @property
    def plan(self) -> dict[str, Any]:
        return dict(self.data["plan"])

    @property
    def begun(self) -> bool:
        """Whether any step has started."""
        return any(step["state"] != PENDING for step in self.data["steps"])

    @property
    def current(self) -> str | None:
        for step in self.data["steps"]:
            if step["state"] in (RUNNING, PENDING):
                return str(step["name"])
        return None

    def state_of(self, name: str) -> str:
        for step in self.data["steps"]:
            if step["name"] == name:
                return str(step["state"])
        return PENDING

    def mark(self, name: str, state: str) -> None:
        for step in self.data["steps"]:
            if step["name"] == name:
                step["state"] = state
                step["at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.save()

    def set_status(self, status: str) -> None:
        self.data["status"] = status
        self.data["pid"] = os.getpid()
        self.save()

    def record(self, key: str, value: Any) -> None:
        """Facts a step learnt (which manifests it moved) that its undo will need."""
        self.data.setdefault("facts", {})[key] = value
        self.save()

    def fact(self, key: str, default: Any = None) -> Any:
        return self.data.get("facts", {}).get(key, default)

    def save(self) -> None:
        if self.path is None:
            return
        atomic_write(self.path, (json.dumps(self.data, indent=2) + "\n").encode())


class Runner:
    """Runs, resumes and rolls back the steps of one journal."""

    def __init__(self, journal: Journal, steps: list[Step[Any]], step_run: StepRun[Any]):
        self.journal = journal
        self.steps = steps
        self.step_run = step_run

    def run(self) -> None:
        self.journal.set_status("running")
        with log.bound(operation=self.journal.operation, operation_id=self.journal.data["id"]):
            for step in self.steps:
                if self.journal.state_of(step.name) != DONE:
                    with log.bound(step=step.name):
                        self._run_step(step)
        self.journal.set_status("done")

    def _run_step(self, step: Step[Any]) -> None:
        self.journal.mark(step.name, RUNNING)
        started = time.monotonic()
        _log.info("step.start")
        try:
            step.do(self.step_run)
        except BaseException as exc:
            if self._nothing_done() and self._undo_first(step):
                raise self._unchanged(step, exc) from exc
            failure = self._failed(step, exc)
            if isinstance(exc, WaitTimedOut):
                # What the wait saw and advised, for `status` to repeat (the error is gone).
                self.journal.data["ran_out"] = {"what": exc.what, "next": exc.next_step}
            self.journal.set_status(TIMED_OUT if isinstance(exc, WaitTimedOut) else
                                    INTERRUPTED if isinstance(failure, Interrupted) else
                                    "failed")
            raise failure from exc
        self.journal.mark(step.name, DONE)
        _log.info("step.done", seconds=round(time.monotonic() - started, 3))

    def rollback(self) -> None:
        self.journal.set_status("failed")
        for step in reversed(self.steps):
            if self.journal.state_of(step.name) not in (RUNNING, DONE):
                continue
            if step.undo is None:
                self.journal.mark(step.name, NO_UNDO)
                continue
            _log.info("step.undo", operation=self.journal.operation, step=step.name)
            step.undo(self.step_run)
            self.journal.mark(step.name, UNDONE)
        self.journal.set_status("rolled-back")

    def _nothing_done(self) -> bool:
        return not any(self.journal.state_of(s.name) in (DONE, UNDONE) for s in self.steps)

    def _undo_first(self, step: Step[Any]) -> bool:
        """The first step failed: undo what it may have begun (its undo is idempotent, as
        for a rollback), so a run refused at its first step leaves no operation in flight.
        False when the undo itself fails: the run is then part-way like any other."""
        try:
            if step.undo is not None:
                step.undo(self.step_run)
        except Exception as exc:  # reported as the part-way failure below
            _log.warning("step.undo_failed", operation=self.journal.operation, step=step.name,
                         error=str(exc))
            return False
        self.journal.mark(step.name, UNDONE if step.undo is not None else NO_UNDO)
        self.journal.set_status(NOTHING_CHANGED)
        return True

    def _unchanged(self, step: Step[Any], exc: BaseException) -> RecoveryError:
        state = (f"unchanged: {self.journal.operation} stopped at its first step, "
                 f"`{step.name}`, and nothing is left changed (no resume or rollback needed)")
        if isinstance(exc, KeyboardInterrupt | Interrupted):
            return Interrupted(f"{self.journal.operation} interrupted during `{step.name}`",
                               state=state, next_step="run the same command again")
        if isinstance(exc, RecoveryError):
            # Its own class and exit code (a refused token stays a refusal); the state is
            # what the runner knows.
            exc.state = state
            return exc
        return StepFailed(f"step `{step.name}` of {self.journal.operation} failed: "
                          f"{type(exc).__name__}: {exc}", state=state,
                          next_step="fix the cause, then run the same command again")

    def _failed(self, step: Step[Any], exc: BaseException) -> RecoveryError:
        done = [s.name for s in self.steps if self.journal.state_of(s.name) == DONE]
        state = (f"part-way: steps done: {', '.join(done) or 'none'}; `{step.name}` may be "
                 "half done (the journal knows)")
        again = (f"`ocp-recovery resume` runs `{step.name}` again and finishes; "
                 "`ocp-recovery rollback` returns the host to how it was")
        if isinstance(exc, KeyboardInterrupt | Interrupted):
            return Interrupted(f"{self.journal.operation} interrupted during `{step.name}`",
                               state=state, next_step=again)
        if isinstance(exc, WaitTimedOut):
            # What the step knows of where its wait left the cluster, after the runner's part.
            known = "" if exc.state == WaitTimedOut.default_state else f"; {exc.state}"
            return WaitTimedOut(exc.what, state=f"part-way: steps done: {', '.join(done)}; "
                                f"the wait `{step.name}` ran out{known}",
                                next_step=f"{exc.next_step}; then {again}")
        what = exc.what if isinstance(exc, RecoveryError) else f"{type(exc).__name__}: {exc}"
        return StepFailed(f"step `{step.name}` of {self.journal.operation} failed: {what}",
                          state=state, next_step=f"fix the cause, then {again}")


def plan_and_execute(ctx: Context, procedure: Procedure[RequestT, PlanT, ResultT],
                     request: RequestT) -> ResultT:
    """Every check, then the steps, with no confirmation: for drills and tests."""
    return execute(ctx, procedure, procedure.plan(ctx, request))
