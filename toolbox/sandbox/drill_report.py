"""A drill's timed report, and the checks that fail it."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from toolbox.context import Context, build_context
from toolbox.errors import DrillFailed
from toolbox.sandbox.cluster import Sandbox


@dataclass
class DrillReport:
    name: str
    etcd: str
    phases: list[tuple[str, float]] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)

    @contextmanager
    def phase(self, label: str) -> Iterator[None]:
        started = time.monotonic()
        yield
        self.phases.append((label, time.monotonic() - started))

    @property
    def total(self) -> float:
        return sum(s for _, s in self.phases)

    def render(self) -> str:
        width = max(len(p) for p, _ in self.phases)
        lines = [f"drill {self.name} (etcd {self.etcd})"]
        lines += [f"  {label:<{width}}  {seconds:7.2f} s" for label, seconds in self.phases]
        lines.append(f"  {'total':<{width}}  {self.total:7.2f} s")
        lines += [f"  ok: {fact}" for fact in self.facts]
        return "\n".join(lines)


def master_context(sandbox: Sandbox, index: int, environ: Mapping[str, str]) -> Context:
    """The Context ocp-recovery builds when run on sandbox master `index`."""
    return build_context(sandbox.env_vars(index, dict(environ)), log_format="json")


def check(ok: bool, what: str) -> None:
    if not ok:
        raise DrillFailed(what, next_step="read the sandbox logs under the drill directory")
