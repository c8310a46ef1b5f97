"""The README's sandbox walk-throughs, run as written: test data with etcdctl, then guide 3.3
(a backup copied to every master's host root, restored on all three at once)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.conftest import require_etcd
from tests.e2e.helpers import BIN, REPO
from toolbox.sandbox.cluster import DEFAULT_DIR, Sandbox
from toolbox.sandbox.workload import kv_client


def readme_block(heading: str) -> str:
    """The first ```sh block under `heading` in the README."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(f"\n{heading}\n"):]
    found = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert found, f"no sh block under {heading}"
    return found.group(1)


def run_as_written(block: str, sandbox: Sandbox) -> subprocess.CompletedProcess[str]:
    """The block in bash, with the sandbox at this test's directory, not the default one."""
    script = block.replace(str(DEFAULT_DIR), str(sandbox.dir))
    env = {**os.environ, "OCP_RECOVERY_SANDBOX": str(sandbox.dir),
           "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True,
                          text=True, timeout=240, env=env, cwd=REPO)


def test_test_data_then_guide_3_3_as_the_readme_says(tmp_path: Path) -> None:
    require_etcd("3.5")
    sandbox = Sandbox.up(tmp_path / "sb", masters=3, etcd="3.5")
    try:
        loaded = run_as_written(readme_block("### Test data on the sandbox"), sandbox)
        assert loaded.returncode == 0, loaded.stderr
        assert loaded.stdout.strip() == "50", loaded.stdout
        restored = run_as_written(readme_block(
            "### Guide 3.3 on the sandbox: the same backup on every master"), sandbox)
        assert restored.returncode == 0, restored.stdout + restored.stderr
        for index in (1, 2):
            copy = sandbox.root(index) / "home/core/backup"
            assert sorted(p.name for p in copy.iterdir()) == sorted(
                p.name for p in (sandbox.root(0) / "home/core/backup").iterdir())
        with sandbox.client(2) as client:
            assert sorted(m.name for m in client.members()) == [
                f"etcd-member-master-{i}" for i in range(3)]
        with kv_client(sandbox, 2) as kv:
            demo = {m.key.decode(): value for value, m in
                    kv.get_prefix("/kubernetes.io/configmaps/demo/")}
        assert len(demo) == 50 and demo["/kubernetes.io/configmaps/demo/cm-7"] == b"value 7"
    finally:
        sandbox.down()
