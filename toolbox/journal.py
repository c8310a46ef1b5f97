"""The step runner: a journal on the host so a killed run can be resumed or rolled back.

A procedure is a list of named steps, each with `do` and (when it changes the host) `undo`.
Before a step runs the journal says `running`; after, `done`. Every `do` and `undo` is
idempotent, because a kill can land anywhere inside one: `resume` runs the interrupted step
again, `rollback` undoes it and every step done, newest first.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

_log = log.get(__name__)

PENDING, RUNNING, DONE, UNDONE = "pending", "running", "done", "undone"
IN_FLIGHT = ("running", "failed")
# A run whose first step failed and was undone: closed, nothing to resume or roll back.
NOTHING_CHANGED = "nothing-changed"


def new_operation_id(operation: str) -> str:
    """`restore-20261201T075012Z`: made once by the plan, so the stash directory the plan
    names, the prompt and the journal all carry the same id."""
    return f"{operation}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}"


@dataclass(frozen=True)
class Step:
    name: str
    change: str                       # the host change it makes, for --dry-run and status
    do: Callable[[], object]          # what it returns is not used
    undo: Callable[[], object] | None = None


class Journal:
    def __init__(self, path: Path | None, data: dict[str, Any]):
        self.path = path
        self.data = data

    @classmethod
    def in_memory(cls, plan: dict[str, Any]) -> Journal:
        """For --dry-run and for naming the steps: records nothing on the host."""
        return cls(None, {"operation": "dry-run", "status": "dry-run", "plan": plan,
                          "steps": []})

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
            if previous.status in IN_FLIGHT:
                raise OperationInFlight(
                    f"a `{previous.operation}` started {previous.data['started']} is in "
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

    def __init__(self, journal: Journal, steps: list[Step]):
        self.journal = journal
        self.steps = steps

    def run(self) -> None:
        self.journal.set_status("running")
        for step in self.steps:
            if self.journal.state_of(step.name) == DONE:
                continue
            self.journal.mark(step.name, RUNNING)
            started = time.monotonic()
            _log.info("step.start", operation=self.journal.operation, step=step.name)
            try:
                step.do()
            except BaseException as exc:
                if self._nothing_done() and self._undo_first(step):
                    raise self._unchanged(step, exc) from exc
                self.journal.set_status("failed")
                raise self._failed(step, exc) from exc
            self.journal.mark(step.name, DONE)
            _log.info("step.done", operation=self.journal.operation, step=step.name,
                      seconds=round(time.monotonic() - started, 3))
        self.journal.set_status("done")

    def rollback(self) -> None:
        self.journal.set_status("failed")
        for step in reversed(self.steps):
            if self.journal.state_of(step.name) not in (RUNNING, DONE):
                continue
            if step.undo is not None:
                _log.info("step.undo", operation=self.journal.operation, step=step.name)
                step.undo()
            self.journal.mark(step.name, UNDONE)
        self.journal.set_status("rolled-back")

    def _nothing_done(self) -> bool:
        return not any(self.journal.state_of(s.name) in (DONE, UNDONE) for s in self.steps)

    def _undo_first(self, step: Step) -> bool:
        """The first step failed: undo what it may have begun (its undo is idempotent, as
        for a rollback), so a run refused at its first step leaves no operation in flight.
        False when the undo itself fails: the run is then part-way like any other."""
        try:
            if step.undo is not None:
                step.undo()
        except Exception as exc:  # reported as the part-way failure below
            _log.warning("step.undo_failed", operation=self.journal.operation, step=step.name,
                         error=str(exc))
            return False
        self.journal.mark(step.name, UNDONE)
        self.journal.set_status(NOTHING_CHANGED)
        return True

    def _unchanged(self, step: Step, exc: BaseException) -> RecoveryError:
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

    def _failed(self, step: Step, exc: BaseException) -> RecoveryError:
        done = [s.name for s in self.steps if self.journal.state_of(s.name) == DONE]
        state = (f"part-way: steps done: {', '.join(done) or 'none'}; `{step.name}` may be "
                 "half done (the journal knows)")
        again = (f"`ocp-recovery resume` runs `{step.name}` again and finishes; "
                 "`ocp-recovery rollback` returns the host to how it was")
        if isinstance(exc, KeyboardInterrupt | Interrupted):
            return Interrupted(f"{self.journal.operation} interrupted during `{step.name}`",
                               state=state, next_step=again)
        if isinstance(exc, WaitTimedOut):
            return WaitTimedOut(exc.what, state=f"part-way: steps done: {', '.join(done)}; "
                                f"the wait `{step.name}` ran out",
                                next_step=f"{exc.next_step}; then {again}")
        what = exc.what if isinstance(exc, RecoveryError) else f"{type(exc).__name__}: {exc}"
        return StepFailed(f"step `{step.name}` of {self.journal.operation} failed: {what}",
                          state=state, next_step=f"fix the cause, then {again}")


def execute(state_dir: Path, operation: str, plan: dict[str, Any],
            build: Callable[[Journal], list[Step]]) -> None:
    """Run a procedure's steps under the host lock with a new journal."""
    with host_lock(state_dir, operation):
        names = [s.name for s in build(Journal.in_memory(plan))]
        journal = Journal.begin(state_dir, operation, plan, names)
        Runner(journal, build(journal)).run()


def describe(steps: list[Step]) -> list[str]:
    return [f"{i + 1:>2}. {s.name}: {s.change}" for i, s in enumerate(steps)]
