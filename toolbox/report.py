"""What a command tells the operator when it is done: one `Report`, shown as console lines
or as one JSON object, the same way for every command."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Report:
    event: str                                      # stable id, e.g. "restore.summary"
    summary: str                                    # the first console line
    fields: dict[str, Any] = field(default_factory=dict)   # the JSON object's facts
    details: list[str] = field(default_factory=list)       # console lines after the summary
    warnings: list[str] = field(default_factory=list)
    next: list[str] = field(default_factory=list)          # commands to run next; [] when done

    def lines(self) -> list[str]:
        return [self.summary, *self.details, *(f"warning: {w}" for w in self.warnings),
                *(f"next: {n}" for n in self.next)]

    def json(self) -> dict[str, Any]:
        return {"event": self.event, "summary": self.summary, **self.fields,
                "warnings": self.warnings, "next": self.next}
