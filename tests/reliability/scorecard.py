"""The reliability scorecard: per area, the faults injected and hostile inputs tried by the
tests in tests/reliability, counted from their `fault(area)` / `hostile(area)` markers by
collecting them, so the README's table is what the suite runs, never a hand-kept list.

    python -m tests.reliability.scorecard                 # print it
    python -m tests.reliability.scorecard --write-readme  # put it into README.md
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import textwrap
from collections import Counter, defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TESTS = Path(__file__).resolve().parent
README = ROOT / "README.md"
START, END = "<!-- scorecard:start -->", "<!-- scorecard:end -->"
WRITE_COMMAND = "python -m tests.reliability.scorecard --write-readme"
KINDS = ("fault", "hostile")


class Collector:
    """A pytest plugin that counts the collected items per marker kind and area."""

    def __init__(self) -> None:
        self.counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.known_gaps = 0

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        for item in session.items:
            markers = [m for m in map(item.get_closest_marker, KINDS) if m is not None]
            if not markers:
                continue
            # A known gap does not pass its assertions, so it is not counted as tried.
            if item.get_closest_marker("xfail") is not None:
                self.known_gaps += 1
                continue
            for marker in markers:
                self.counts[str(marker.args[0])][marker.name] += 1


def collect() -> Collector:
    collector = Collector()
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", str(TESTS)],
                           plugins=[collector])
    if code != pytest.ExitCode.OK:
        raise SystemExit(f"collecting {TESTS} failed ({code!r}):\n{output.getvalue()}")
    return collector


def render(collector: Collector) -> str:
    rows = ["| area | faults injected | hostile inputs tried | runs that lost data | "
            "host changes after a refused run |",
            "| --- | ---: | ---: | ---: | ---: |"]
    for area in sorted(collector.counts):
        count = collector.counts[area]
        rows.append(f"| {area} | {count['fault']} | {count['hostile']} | 0 | 0 |")
    faults = sum(c["fault"] for c in collector.counts.values())
    hostile = sum(c["hostile"] for c in collector.counts.values())
    rows.append(f"| **total** | **{faults}** | **{hostile}** | **0** | **0** |")
    return "\n".join(rows) + "\n\n" + textwrap.fill(
        "Counts are of test cases in `tests/reliability` (run them with "
        "`python -m pytest tests/reliability`). The last two columns are 0 by construction: "
        "every counted test asserts them. A fault test fails if data written before the "
        "fault is lost; a hostile-input test fails unless the input is refused with a "
        "message naming the problem and its documented exit code (or, for a valid but "
        "tricky input, handled exactly), and, where the input reaches a command, fails if "
        "anything under the host root changed. Not counted: "
        f"{collector.known_gaps} known gaps, tests marked `xfail` until the product handles "
        "them (`python -m pytest tests/reliability -rx` lists them).", width=92,
        break_on_hyphens=False, break_long_words=False)


def readme_block(text: str) -> str:
    """What README.md holds between the scorecard markers."""
    if START not in text or END not in text:
        raise SystemExit(f"README.md lacks the {START} / {END} markers")
    return text.split(START, 1)[1].split(END, 1)[0].strip()


def write_readme(table: str) -> None:
    text = README.read_text()
    readme_block(text)  # the markers are there
    head, rest = text.split(START, 1)
    README.write_text(f"{head}{START}\n{table}\n{END}{rest.split(END, 1)[1]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.scorecard",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write-readme", action="store_true",
                        help="replace the table between the scorecard markers in README.md")
    args = parser.parse_args(argv)
    table = render(collect())
    if args.write_readme:
        write_readme(table)
    else:
        sys.stdout.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
