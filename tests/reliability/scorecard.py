"""The reliability scorecard: per area, the tests of tests/reliability that passed in a real
run, read from that run's junit XML, so the README's table is what the suite proved.

    python -m pytest tests/reliability --junitxml=reliability.xml
    python -m tests.reliability.scorecard reliability.xml                 # print it
    python -m tests.reliability.scorecard reliability.xml --write-readme  # into README.md
    python -m tests.reliability.scorecard --check  # README.md lists the tests collected now

Each test records in the XML (tests/conftest.py) its id, its `fault(area)` / `hostile(area)`
markers and, for every `assert_host_unchanged` block that passed, `host_unchanged`. A run
with a failing, erroring or skipped test is refused (an xfail is a known gap: listed, not
counted), as is one that lacks a test collected now (a deselected test) or has one no longer
collected (an old XML). The README lists every test with what it proved; `--check` renders
the table again from that list and compares the list with the tests collected now.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import sys
import textwrap
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import SCORECARD_KINDS

ROOT = Path(__file__).resolve().parents[2]
TESTS = Path(__file__).resolve().parent
README = ROOT / "README.md"
START, END = "<!-- scorecard:start -->", "<!-- scorecard:end -->"
RUN_COMMAND = "python -m pytest tests/reliability --junitxml=reliability.xml"
WRITE_COMMAND = "python -m tests.reliability.scorecard reliability.xml --write-readme"
KNOWN_GAP = "known gap (xfail)"
UNCHANGED = "host unchanged"
NOT_COMPARED = " (not compared: "
LIST_OPEN = "<details><summary>The tests, and what each proved</summary>"
LIST_CLOSE = "</details>"


@dataclass(frozen=True)
class Row:
    """One test of the run: its markers as (kind, area), whether it is a known gap, and the
    paths its passed `assert_host_unchanged` blocks did not compare (None: it had none)."""
    nodeid: str
    marks: tuple[tuple[str, str], ...]
    known_gap: bool
    not_compared: tuple[str, ...] | None

    def key(self) -> tuple[str, tuple[tuple[str, str], ...], bool]:
        """What collecting the tests can tell, to compare a run with the suite of now."""
        return self.nodeid, self.marks, self.known_gap

    def line(self) -> str:
        facts = [" ".join(f"{kind}({area})" for kind, area in self.marks)]
        if self.known_gap:
            facts.append(KNOWN_GAP)
        elif self.not_compared is not None:
            facts.append(UNCHANGED + (f"{NOT_COMPARED}{', '.join(self.not_compared)})"
                                      if self.not_compared else ""))
        return f"- `{self.nodeid}`: {'; '.join(facts)}"


LINE = re.compile(r"- `(?P<nodeid>[^`]+)`: (?P<marks>[^;]+)(?:; (?P<fact>.+))?")
MARK = re.compile(r"(\w+)\(([^)]*)\)")


def parse_line(line: str) -> Row:
    """The inverse of Row.line."""
    found = LINE.fullmatch(line)
    if found is None:
        raise SystemExit(f"README.md's scorecard has a line it cannot read: {line!r}")
    fact = found["fact"] or ""
    not_compared: tuple[str, ...] | None = None
    if fact.startswith(UNCHANGED):
        paths = fact.removeprefix(UNCHANGED).removeprefix(NOT_COMPARED).removesuffix(")")
        not_compared = tuple(paths.split(", ")) if paths else ()
    return Row(found["nodeid"], tuple(MARK.findall(found["marks"])), fact == KNOWN_GAP,
               not_compared)


def rows_from_junit(path: Path) -> list[Row]:
    """The scorecard tests of a junit XML; refuses a run where any test did not pass."""
    try:
        cases = ET.parse(path).getroot().iter("testcase")
    except (OSError, ET.ParseError) as exc:
        raise SystemExit(f"{path} is not a readable junit XML: {exc}") from None
    rows: dict[str, Row] = {}
    not_passed = []
    for case in cases:
        properties = [(p.get("name", ""), p.get("value", "")) for p in case.iter("property")]
        nodeids = [value for key, value in properties if key == "nodeid"]
        outcomes = [child for child in case if child.tag in ("failure", "error", "skipped")]
        xfailed = [o for o in outcomes if o.tag == "skipped" and o.get("type") == "pytest.xfail"]
        if len(outcomes) != len(xfailed):
            name = nodeids[0] if nodeids else f"{case.get('classname')}::{case.get('name')}"
            not_passed.append(f"{name}: {', '.join(o.tag for o in outcomes)}")
            continue
        if not nodeids:
            continue  # not a scorecard test
        unchanged = [set(value.split(",")) - {""} for key, value in properties
                     if key == "host_unchanged"]
        rows[nodeids[0]] = Row(
            nodeids[0], tuple((key, value) for key, value in properties if key in SCORECARD_KINDS),
            bool(xfailed), tuple(sorted(set().union(*unchanged))) if unchanged else None)
    if not_passed:
        raise SystemExit(f"{path}: {len(not_passed)} test(s) did not pass; the scorecard counts "
                         "a run where all did:\n  " + "\n  ".join(not_passed))
    return sorted(rows.values(), key=lambda row: row.nodeid)


class Collector:
    """A pytest plugin: what the tests collected now would record (Row.key)."""

    def __init__(self) -> None:
        self.keys: list[tuple[str, tuple[tuple[str, str], ...], bool]] = []

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        for item in session.items:
            marks = tuple((m.name, str(m.args[0])) for m in map(item.get_closest_marker,
                                                                SCORECARD_KINDS) if m)
            if marks:
                self.keys.append((item.nodeid, marks, item.get_closest_marker("xfail") is not None))


def collected() -> set[tuple[str, tuple[tuple[str, str], ...], bool]]:
    collector = Collector()
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider",
                            f"--rootdir={ROOT}", str(TESTS)], plugins=[collector])
    if code != pytest.ExitCode.OK:
        raise SystemExit(f"collecting {TESTS} failed ({code!r}):\n{output.getvalue()}")
    return set(collector.keys)


def differences(rows: list[Row], what: str) -> list[str]:
    """How `rows` (from `what`) differ from the tests collected now."""
    listed, now = {row.key() for row in rows}, collected()
    return ([f"collected now, not in {what}: {key}" for key in sorted(now - listed)]
            + [f"in {what}, not collected now: {key}" for key in sorted(listed - now)])


def render(rows: list[Row]) -> str:
    counted = [row for row in rows if not row.known_gap]
    count: Counter[tuple[str, str]] = Counter()
    for row in counted:
        for kind, area in row.marks:
            count[kind, area] += 1
            count["host", area] += row.not_compared is not None
    areas = sorted({area for _, area in count})
    table = ["| area | faults injected | hostile inputs tried | host proved unchanged |",
             "| --- | ---: | ---: | ---: |"]
    table += [f"| {area} | {count['fault', area]} | {count['hostile', area]} | "
              f"{count['host', area]} |" for area in areas]
    total = {kind: sum(count[kind, area] for area in areas)
             for kind in (*SCORECARD_KINDS, "host")}
    table.append(f"| **total** | **{total['fault']}** | **{total['hostile']}** | "
                 f"**{total['host']}** |")
    gaps = len(rows) - len(counted)
    note = textwrap.fill(
        "Counts are of the tests in `tests/reliability` that passed in one run of them all, "
        "per area of their `fault(area)` / `hostile(area)` marker, read from that run's "
        "junit XML: a failing, skipped or deselected test fails the generator instead. "
        "\"host proved unchanged\": tests in which `assert_host_unchanged` "
        "(tests/conftest.py) compared every file under the host root (mode, owner, content, "
        "link target) before and after a refused run, or a kill and its `rollback`, and "
        "found no change; the list says which paths it did not compare. Not counted: "
        f"{gaps} known gaps (`xfail` until the product handles them). A unit test fails "
        "when the list below is not the tests collected now (regenerate it with the two "
        "commands above).", width=92, break_on_hyphens=False,
        break_long_words=False)
    return "\n".join([*table, "", note, "", LIST_OPEN, "",
                      *(row.line() for row in rows), "", LIST_CLOSE])


def readme_block(text: str) -> str:
    """What README.md holds between the scorecard markers."""
    if START not in text or END not in text:
        raise SystemExit(f"README.md lacks the {START} / {END} markers")
    return text.split(START, 1)[1].split(END, 1)[0].strip()


def readme_rows(block: str) -> list[Row]:
    if LIST_OPEN not in block:
        return []
    listed = block.split(LIST_OPEN, 1)[1].split(LIST_CLOSE, 1)[0]
    return [parse_line(line) for line in listed.splitlines() if line.strip()]


def check_readme() -> list[str]:
    """Why README.md's scorecard is not the one its list of tests makes, or that list not
    the tests collected now; empty when it is both."""
    block = readme_block(README.read_text())
    rows = readme_rows(block)
    problems = differences(rows, "README.md")
    if render(rows) != block:
        problems.append("the table or text is not what its list of tests makes")
    return problems


def write_readme(block: str) -> None:
    text = README.read_text()
    readme_block(text)  # the markers are there
    head, rest = text.split(START, 1)
    README.write_text(f"{head}{START}\n{block}\n{END}{rest.split(END, 1)[1]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.scorecard",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("junit_xml", type=Path, nargs="?",
                        help=f"the junit XML of a run of tests/reliability ({RUN_COMMAND})")
    parser.add_argument("--write-readme", action="store_true",
                        help="replace the scorecard between its markers in README.md")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 unless README.md's scorecard lists the tests collected now")
    args = parser.parse_args(argv)
    if args.check:
        problems = check_readme()
        for problem in problems:
            sys.stderr.write(problem + "\n")
        if problems:
            sys.stderr.write(f"regenerate it: {RUN_COMMAND}, then {WRITE_COMMAND}\n")
        return 1 if problems else 0
    if args.junit_xml is None:
        parser.error("give the junit XML of a run (or --check)")
    rows = rows_from_junit(args.junit_xml)
    problems = differences(rows, str(args.junit_xml))
    if problems:
        raise SystemExit(f"{args.junit_xml} is not a run of every test collected now:\n  "
                         + "\n  ".join(problems))
    block = render(rows)
    if args.write_readme:
        write_readme(block)
    else:
        sys.stdout.write(block + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
