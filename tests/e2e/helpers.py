"""Running the installed commands as real processes against sandbox masters."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from toolbox.sandbox import workload
from toolbox.sandbox.cluster import Sandbox

BIN = Path(sys.executable).parent


def command(sandbox: Sandbox, index: int, *args: str, extra_env: dict[str, str] | None = None,
            program: str = "ocp-recovery", timeout: float = 180
            ) -> subprocess.CompletedProcess[str]:
    env = sandbox.env_vars(index, dict(os.environ))
    env.update(extra_env or {})
    return subprocess.run([str(BIN / program), *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def cluster_of(sandbox: Sandbox, masters: list[int]) -> str:
    return ",".join(f"{sandbox.spec(i).member_name}={sandbox.spec(i).peer_url}"
                    for i in masters)


keys_in = workload.read_group
