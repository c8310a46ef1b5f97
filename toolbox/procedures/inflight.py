"""`status`, `resume`, `rollback`: the operation in flight on this host, from its journal."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from toolbox.context import Context
from toolbox.errors import PreconditionFailed
from toolbox.host.files import remove_empty_tree
from toolbox.host.lock import current_holder, host_lock
from toolbox.journal import IN_FLIGHT, Journal, Runner
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
    holder_alive: bool

    def lines(self) -> list[str]:
        j = self.journal
        if j is None:
            return ["no operation has run on this host (no journal)"]
        head = (f"{j.operation} {j.data['id']}: {j.status}"
                + (f" (pid {j.data['pid']} is running it now)" if self.holder_alive else ""))
        lines = [head]
        for step in j.data["steps"]:
            lines.append(f"  {step['state']:<8} {step['name']}")
        if j.status in IN_FLIGHT and not self.holder_alive:
            lines.append("the run stopped part-way: `ocp-recovery resume` finishes it, "
                         "`ocp-recovery rollback` undoes it")
        elif j.status == "done":
            lines.append("finished; `ocp-recovery rollback` still undoes it until another "
                         "operation starts")
        return lines


def status(ctx: Context) -> Status:
    return Status(Journal.load(ctx.paths.state_dir),
                  current_holder(ctx.paths.state_dir) is not None)


def _module(journal: Journal) -> ModuleType:
    module = PROCEDURES.get(journal.operation)
    if module is None:
        raise PreconditionFailed(f"this version of ocp-recovery does not know the operation "
                                 f"`{journal.operation}` in the journal")
    return module


def resume(ctx: Context, *, wait: bool = True) -> tuple[str, Any]:
    """Finish the operation in flight; returns its name and its procedure's result."""
    with host_lock(ctx.paths.state_dir, "resume"):
        journal = _journal(ctx, IN_FLIGHT, "resume")
        module = _module(journal)
        Runner(journal, module.steps(ctx, journal)).run()
    return journal.operation, module.finish(ctx, journal.plan, wait=wait)


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

