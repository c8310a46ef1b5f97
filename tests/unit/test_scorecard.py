"""The README's reliability scorecard is the one the tests in tests/reliability generate."""

import subprocess
import sys

from tests.reliability.scorecard import README, ROOT, WRITE_COMMAND, readme_block


def test_readme_scorecard_is_the_generated_one() -> None:
    # A separate process: collecting tests/reliability inside this pytest run would share
    # its modules and plugins.
    done = subprocess.run([sys.executable, "-m", "tests.reliability.scorecard"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert readme_block(README.read_text()) == done.stdout.strip(), \
        f"README.md's scorecard is stale; regenerate it with: {WRITE_COMMAND}"
