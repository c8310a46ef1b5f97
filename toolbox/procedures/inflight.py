"""`status`, `resume`, `rollback`: the operation in flight on this host, from its journal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from toolbox.context import Context
from toolbox.errors import PreconditionFailed
from toolbox.host.files import remove_empty_tree
from toolbox.host.lock import LockHolder, current_holder, host_lock
from toolbox.journal import (
    DONE,
    IN_FLIGHT,
    INTERRUPTED,
    NOTHING_CHANGED,
    PENDING,
    RUNNING,
    TIMED_OUT,
    Confirmation,
    Journal,
    Procedure,
    Runner,
    StepRun,
    describe,
)
from toolbox.procedures import (
    kubelet,
    member_add,
    member_recover,
    objects_restore,
    recovery_apiserver,
    regenerate_certs,
    restore,
)
from toolbox.report import Report


class Reported(Protocol):
    def report(self) -> Report: ...


# Every journaled procedure, by the operation name its journal carries.
PROCEDURES: dict[str, Procedure[Any, Any, Reported]] = {
    p.operation: p for p in (restore.PROCEDURE, member_add.PROCEDURE, member_recover.PROCEDURE,
                             recovery_apiserver.PROCEDURE, regenerate_certs.PROCEDURE,
                             kubelet.PROCEDURE, objects_restore.PROCEDURE)}


@dataclass
class Status:
    journal: Journal | None
    holder: LockHolder | None      # who holds the host lock now (None: nobody)

    def report(self) -> Report:
        j, holder = self.journal, self.holder
        running = holder is not None and j is not None and j.status == "running" and \
            holder.pid == j.data.get("pid")
        lines = []
        facts: dict[str, Any] = {"lock_holder": holder.describe() if holder else None}
        if holder is not None and not running:
            # Not the journal's operation: a backup, a member remove, a signer…
            lines.append(f"{holder.describe()} holds this host's lock now")
        if j is None:
            lines.append("no journaled operation has run on this host")
            return Report("status", lines[0], facts, details=lines[1:])
        if running:
            head = f"{j.operation} {j.data['id']}: running (pid {j.data['pid']})"
        elif j.status == "running":
            head = f"{j.operation} {j.data['id']}: stopped part-way (its process is gone)"
        elif j.status == TIMED_OUT:
            head = f"{j.operation} {j.data['id']}: its wait `{j.current}` ran out"
        elif j.status == INTERRUPTED:
            head = f"{j.operation} {j.data['id']}: interrupted part-way (Ctrl-C or SIGTERM)"
        else:
            head = f"{j.operation} {j.data['id']}: {j.status}"
        lines.append(head if not lines else f"last journaled operation: {head}")
        steps = []
        for step in j.data["steps"]:
            state = step["state"]
            if state == RUNNING and not running:
                # nothing runs it now
                state = "ran out" if j.status == TIMED_OUT else "stopped"
            elif state == PENDING and j.status in ("rolled-back", NOTHING_CHANGED):
                state = "not run"  # and never will: "pending" would read as still to come
            steps.append({"name": step["name"], "state": state})
            lines.append(f"  {state:<8} {step['name']}")
        next_steps: list[str] = []
        if j.status in IN_FLIGHT and not running and not j.begun:
            lines.append("it stopped before its first step and changed nothing: run the same "
                         "command again (or `ocp-recovery resume` to run this plan)")
            next_steps = ["the same command again", "ocp-recovery resume"]
        elif j.status == TIMED_OUT and not running:
            ran_out = j.data.get("ran_out", {})
            if ran_out:
                lines += [f"it {ran_out['what']}", f"what it said to do: {ran_out['next']}"]
            lines.append("every change before the wait is made, and a wait changes nothing: "
                         "`ocp-recovery resume` waits again and finishes, `ocp-recovery "
                         "rollback` undoes it")
            next_steps = ["ocp-recovery resume", "ocp-recovery rollback"]
        elif j.status in IN_FLIGHT and not running:
            lines.append("the run stopped part-way: `ocp-recovery resume` finishes it, "
                         "`ocp-recovery rollback` undoes it")
            next_steps = ["ocp-recovery resume", "ocp-recovery rollback"]
        elif j.status == "done":
            lines.append("finished; `ocp-recovery rollback` still undoes it until another "
                         "operation starts")
        elif j.status == NOTHING_CHANGED:
            lines.append("it failed at its first step and changed nothing: nothing to resume "
                         "or roll back")
        facts.update(operation=j.operation, id=j.data["id"], running=running,
                     status="stopped part-way" if j.status in ("running", "failed", INTERRUPTED)
                     and not running else j.status, pid=j.data.get("pid"),
                     started=j.data.get("started"), steps=steps)
        return Report("status", lines[0], facts, details=lines[1:], next=next_steps)


def status(ctx: Context) -> Status:
    return Status(Journal.load(ctx.paths.state_dir), current_holder(ctx.paths.state_dir))


def _procedure(journal: Journal) -> Procedure[Any, Any, Reported]:
    procedure = PROCEDURES.get(journal.operation)
    if procedure is None:
        raise PreconditionFailed(f"this version of ocp-recovery does not know the operation "
                                 f"`{journal.operation}` in the journal")
    return procedure


def _runner(ctx: Context, journal: Journal, procedure: Procedure[Any, Any, Reported]
            ) -> Runner:
    plan = procedure.load_plan(journal)
    return Runner(journal, procedure.steps(ctx, plan), StepRun(ctx, plan, journal))


def resume(ctx: Context) -> Reported:
    """Finish the operation in flight, its waits included; its procedure's result."""
    with host_lock(ctx.paths.state_dir, "resume"):
        journal = _journal(ctx, IN_FLIGHT, "resume")
        procedure = _procedure(journal)
        _runner(ctx, journal, procedure).run()
    return procedure.finish(ctx, procedure.load_plan(journal), journal)


def resume_preview(ctx: Context) -> tuple[Confirmation, list[str]]:
    """What `resume` would run, in order: the steps not done, the interrupted one first
    (nothing is locked or changed)."""
    with host_lock(ctx.paths.state_dir, "resume"):  # refused now if another one runs
        journal = _journal(ctx, IN_FLIGHT, "resume")
    procedure = _procedure(journal)
    left = [s for s in procedure.steps(ctx, procedure.load_plan(journal))
            if journal.state_of(s.name) != DONE]
    return Confirmation(f"resume of the part-way {journal.operation} {journal.data['id']}",
                        "Finish it?"), describe(left)


def rollback_preview(ctx: Context) -> tuple[Confirmation, list[str]]:
    """What `rollback` would undo, newest first, for the confirmation (nothing is locked or
    changed: rollback checks the journal again under the lock)."""
    with host_lock(ctx.paths.state_dir, "rollback"):  # refused now if another one runs
        journal = _journal(ctx, (*IN_FLIGHT, "done"), "roll back")
    procedure = _procedure(journal)
    done = {s["name"] for s in journal.data["steps"] if s["state"] in (RUNNING, DONE)}
    undone = [s for s in reversed(procedure.steps(ctx, procedure.load_plan(journal)))
              if s.name in done]
    # A wait changed nothing: there is nothing of it to undo.
    lines = [f"{i + 1:>2}. undo {s.name} (which did: {s.change})"
             for i, s in enumerate(s for s in undone if s.undo is not None)]
    what = "finished" if journal.status == "done" else "part-way"
    return Confirmation(f"rollback of the {what} {journal.operation} {journal.data['id']}",
                        f"Undo {journal.operation} and put the host back as it was before it?"
                        ), lines


def rollback(ctx: Context) -> Journal:
    with host_lock(ctx.paths.state_dir, "rollback"):
        journal = _journal(ctx, (*IN_FLIGHT, "done"), "roll back")
        _runner(ctx, journal, _procedure(journal)).rollback()
        if journal.plan.get("stash"):
            remove_empty_tree(ctx.paths.host(journal.plan["stash"]))
    return journal


def _journal(ctx: Context, allowed: tuple[str, ...], verb: str) -> Journal:
    journal = Journal.load(ctx.paths.state_dir)
    if journal is None or journal.status not in allowed:
        what = f"the last `{journal.operation}` is {journal.status}" if journal else \
            "no operation has run"
        raise PreconditionFailed(f"nothing to {verb}: {what}",
                                 next_step="ocp-recovery status")
    return journal

