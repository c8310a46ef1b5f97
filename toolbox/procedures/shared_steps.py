"""Step functions more than one procedure runs: the kubelet stopped and started again only
if it ran before (the fact is learnt once, so a resumed run does not forget it)."""

from __future__ import annotations

from typing import Any

from toolbox.host.runtime import Runtime
from toolbox.journal import StepRun


def stop_kubelet(run: StepRun[Any]) -> None:
    runtime = Runtime(run.ctx.executor)
    if run.journal.fact("kubelet_was_active") is None:
        run.journal.record("kubelet_was_active", runtime.kubelet_active())
    runtime.stop_kubelet()


def start_kubelet_if_it_ran(run: StepRun[Any]) -> None:
    if run.journal.fact("kubelet_was_active", True):
        Runtime(run.ctx.executor).start_kubelet()


def start_kubelet(run: StepRun[Any]) -> None:
    Runtime(run.ctx.executor).start_kubelet()
