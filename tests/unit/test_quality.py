"""The linters run as part of the suite, so drift fails CI like any other defect."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_ruff() -> None:
    done = run("ruff", "check", "toolbox", "tests", "benchmarks")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy() -> None:
    done = run("mypy", "toolbox")
    assert done.returncode == 0, done.stdout + done.stderr
