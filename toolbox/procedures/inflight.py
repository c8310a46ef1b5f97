"""`status`, `resume`, `rollback`: the operation in flight on this host, from its journal."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from toolbox.context import Context
from toolbox.errors import PreconditionFailed
from toolbox.host.files import remove_empty_tree
from toolbox.host.lock import LockHolder, current_holder, host_lock
from toolbox.journal import IN_FLIGHT, NOTHING_CHANGED, RUNNING, Journal, Runner
from toolbox.procedures import (
    kubelet,
    member_add,
    member_recover,
    recovery_apiserver,
    regenerate_certs,
    restore,
)

PROCEDURES: dict[str, ModuleType] = {restore.OPERATION: restore,
                                     member_add.OPERATION: member_add,
                                     member_recover.OPERATION: member_recover,
                                     recovery_apiserver.OPERATION: recovery_apiserver,
                                     regenerate_certs.OPERATION: regenerate_certs,
                                     kubelet.OPERATION: kubelet}


@dataclass
class Status:
    journal: Journal | None
    holder: LockHolder | None      # who holds the host lock now (None: nobody)

    def lines(self) -> list[str]:
        j, holder = self.journal, self.holder
        running = holder is not None and j is not None and j.status == "running" and \
            holder.pid == j.data.get("pid")
        lines = []
        if holder is not None and not running:
            # Not the journal's operation: a backup, a member remove, a signer…
            lines.append(f"{holder.describe()} holds this host's lock now")
        if j is None:
            return [*lines, "no journaled operation has run on this host"]
        if running:
            head = f"{j.operation} {j.data['id']}: running (pid {j.data['pid']})"
        elif j.status == "running":
            head = f"{j.operation} {j.data['id']}: stopped part-way (its process is gone)"
        else:
            head = f"{j.operation} {j.data['id']}: {j.status}"
        lines.append(head if not lines else f"last journaled operation: {head}")
        for step in j.data["steps"]:
            state = step["state"]
            if state == RUNNING and not running:
                state = "stopped"  # nothing runs it now
            lines.append(f"  {state:<8} {step['name']}")
        if j.status in IN_FLIGHT and not running:
            lines.append("the run stopped part-way: `ocp-recovery resume` finishes it, "
                         "`ocp-recovery rollback` undoes it")
        elif j.status == "done":
            lines.append("finished; `ocp-recovery rollback` still undoes it until another "
                         "operation starts")
        elif j.status == NOTHING_CHANGED:
            lines.append("it failed at its first step and changed nothing: nothing to resume "
                         "or roll back")
        return lines


def status(ctx: Context) -> Status:
    return Status(Journal.load(ctx.paths.state_dir), current_holder(ctx.paths.state_dir))


def _module(journal: Journal) -> ModuleType:
    module = PROCEDURES.get(journal.operation)
    if module is None:
        raise PreconditionFailed(f"this version of ocp-recovery does not know the operation "
                                 f"`{journal.operation}` in the journal")
    return module


def resume(ctx: Context) -> tuple[str, Any]:
    """Finish the operation in flight, its waits included; returns its name and its
    procedure's result."""
    with host_lock(ctx.paths.state_dir, "resume"):
        journal = _journal(ctx, IN_FLIGHT, "resume")
        module = _module(journal)
        Runner(journal, module.steps(ctx, journal)).run()
    return journal.operation, module.finish(ctx, journal.plan)


def rollback(ctx: Context) -> Journal:
    with host_lock(ctx.paths.state_dir, "rollback"):
        journal = _journal(ctx, (*IN_FLIGHT, "done"), "roll back")
        Runner(journal, _module(journal).steps(ctx, journal)).rollback()
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

